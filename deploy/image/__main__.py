"""``python -m deploy.image build``: the service image, tagged localhost/murmur:dev.

MURMUR_IMAGE_BASE (or --base) picks the base image: ``auto`` (the registry's python:3.11-slim
when present or pullable, else one made from Debian packages), ``registry`` or ``debian``.
"""

from __future__ import annotations

import typer

from deploy.image.build import IMAGE, ImageError, build, env_base_choice, parse_base_choice

cli = typer.Typer(add_completion=False, no_args_is_help=True)


@cli.callback()
def main() -> None:
    """The Murmur service image."""


@cli.command("build")
def build_command(
    tag: str = typer.Option(IMAGE, help="tag of the built image"),
    base: str = typer.Option("", help="auto, registry or debian (default: $MURMUR_IMAGE_BASE)"),
) -> None:
    """Build deploy/docker/Dockerfile with docker, else podman; print what was done."""
    try:
        choice = parse_base_choice(base) if base else env_base_choice()
        built = build(tag=tag, base=choice, log=typer.echo)
    except ImageError as exc:
        typer.echo(f"image build failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{built.tag}: {built.image_id[:12]}, {built.engine.name}, base {built.base}")


if __name__ == "__main__":
    cli()
