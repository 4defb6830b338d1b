"""``python -m bench run|report``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

cli = typer.Typer(add_completion=False, no_args_is_help=True)


@cli.command()
def run(
    smoke: bool = typer.Option(
        False,
        help="A 60-user graph, 5 s steps and a small pull data set: the whole path in minutes "
        "(its figures are not the targets' measure).",
    ),
    out: Path | None = typer.Option(None, help="Results JSON (default bench/results/<time>.json)."),
    keep: bool = typer.Option(False, help="Keep the temporary directory (logs) afterwards."),
    step_s: float | None = typer.Option(
        None, help="Seconds per ladder step (default 30; 5 smoke)."
    ),
    confirm: bool = typer.Option(True, help="Rerun the first failing step of each ladder."),
    phases: str = typer.Option(
        "home,mixed,loglevel,fanout,memory,layers,pull", help="Comma-separated phases to run."
    ),
    pull_users: int | None = typer.Option(None, help="Users of the pull data set (100,000)."),
    pull_posts: int | None = typer.Option(None, help="Posts of the pull data set (10 million)."),
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
    target = out or Path("bench/results") / f"{stamp}{'-smoke' if smoke else ''}.json"
    config = RunConfig(
        smoke=smoke,
        out=target,
        seed=seed,
        step_seconds=step_s,
        confirm=confirm,
        phases=tuple(p.strip() for p in phases.split(",") if p.strip()),
        pull_users=pull_users,
        pull_posts=pull_posts,
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
    before: Path | None = typer.Option(
        None, help="An earlier run's results JSON: its targets become the 'before' column."
    ),
) -> None:
    """Render the results JSON as docs/benchmarks.md with PNG plots."""
    from bench.report import render

    render(results, doc, img, before)
    typer.echo(f"wrote {doc} and plots in {img}")


@cli.command("pull-data")
def pull_data(
    users: int = typer.Option(100_000, help="Users of the data set."),
    posts: int = typer.Option(10_000_000, help="Posts of the data set."),
) -> None:
    """Generate (or finish generating) the pull data set's template in the cache, ahead of a
    run; `bench run` does the same when the template is missing."""
    import asyncio

    from bench.runner import prepare_pull_data

    timings = asyncio.run(prepare_pull_data(users, posts))
    typer.echo(f"pull data set ready: {timings}")


if __name__ == "__main__":
    cli()
