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
) -> None:
    """Start a private platform on free ports, load the graph, measure, write JSON."""
    from bench.runner import RunConfig
    from bench.runner import run as run_bench

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = out or Path("bench/results") / f"{stamp}{'-quick' if quick else ''}.json"
    run_bench(RunConfig(quick=quick, out=target, seed=seed, profile=profile), keep=keep)


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
