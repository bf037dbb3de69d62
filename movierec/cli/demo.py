"""``movierec demo``: the whole product on this machine, in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from movierec.cli.common import console, settings_from
from movierec.demo import DEMO_USER, DemoOptions, start_demo


def demo(
    ctx: typer.Context,
    movies: Annotated[int, typer.Option(help="Synthetic movies to generate.")] = 5000,
    users: Annotated[int, typer.Option(help="Synthetic users to generate.")] = 3000,
    ratings: Annotated[int, typer.Option(help="Synthetic ratings to generate.")] = 300_000,
    movielens: Annotated[
        Path | None,
        typer.Option(envvar="MOVIELENS", help="Import this MovieLens release instead."),
    ] = None,
) -> None:
    """Start PostgreSQL, load data, train a model, serve the AI and web servers; Ctrl-C stops."""
    say = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    options = DemoOptions(movies, users, ratings, movielens)
    # SIGTERM (e.g. from a test or a service manager) stops the demo as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    running = start_demo(settings_from(ctx), options, say)
    try:
        console.print(
            f"\n[bold green]movierec is up:[/] {running.web_url}\n"
            f"demo login: [bold]{DEMO_USER}[/] / [bold]{running.password}[/]\n"
            "Ctrl-C stops everything.",
            highlight=False,
        )
        while True:
            signal.pause()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        running.stop()
        console.print("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
