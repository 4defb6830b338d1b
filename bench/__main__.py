"""``python -m bench run|report``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

cli = typer.Typer(add_completion=False, no_args_is_help=True)


@cli.command()
def run(
    quick: bool = typer.Option(
        False, help="A tiny graph and short steps: the whole path in minutes."
    ),
    out: Path | None = typer.Option(None, help="Results JSON (default bench/results/<time>.json)."),
    keep: bool = typer.Option(False, help="Keep the temporary directory (logs) afterwards."),
    profile: bool = typer.Option(True, help="py-spy the services during one mixed step."),
    seed: int = 42,
    api_follows: int = typer.Option(
        -1,
        help="Follows made through the API (the rest go straight into Neo4j); -1: all of them.",
    ),
    follow_concurrency: int = typer.Option(48, help="Follows in flight while loading."),
    follow_budget_s: float = typer.Option(
        300.0, help="Seconds for follows through the API; the rest go straight into Neo4j."
    ),
    generator_processes: int = typer.Option(
        2, help="Processes sending the open-loop load (0: the run's own event loop)."
    ),
) -> None:
    """Start a private platform on free ports, load the graph, measure, write JSON."""
    from bench.runner import RunConfig
    from bench.runner import run as run_bench

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = out or Path("bench/results") / f"{stamp}{'-quick' if quick else ''}.json"
    config = RunConfig(
        quick=quick,
        out=target,
        seed=seed,
        profile=profile,
        api_follows=None if api_follows < 0 else api_follows,
        follow_concurrency=follow_concurrency,
        follow_budget_s=follow_budget_s,
        generator_processes=generator_processes,
    )
    run_bench(config, keep=keep)


@cli.command()
def report(
    results: Path,
    doc: Path = typer.Option(Path("docs/benchmarks.md"), help="Markdown file to write."),
    img: Path = typer.Option(Path("docs/img"), help="Directory for the PNG plots."),
) -> None:
    """Render the results JSON as docs/benchmarks.md with PNG plots."""
    from bench.report import render

    render(results, doc, img)
    typer.echo(f"wrote {doc} and plots in {img}")


if __name__ == "__main__":
    cli()
