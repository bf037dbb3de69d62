"""``movierec data``: fill the database with a synthetic catalogue or a MovieLens release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from movierec.cli.common import console, progress_bar, settings_from
from movierec.data import generate_catalogue, import_movielens
from movierec.db import Database

app = typer.Typer(help="Data: synthetic catalogues and MovieLens imports.", no_args_is_help=True)
import_app = typer.Typer(help="Import a public data set into the database.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@app.command()
def generate(
    ctx: typer.Context,
    movies: Annotated[int, typer.Option(min=1, help="Movies to create.")],
    users: Annotated[int, typer.Option(min=1, help="Users to create.")],
    ratings: Annotated[int, typer.Option(min=0, help="Distinct ratings to create.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
) -> None:
    """Write a synthetic catalogue (movies, users with tastes, their ratings) to the database."""
    database = Database(settings_from(ctx))
    try:
        with progress_bar("generating") as update:
            summary = generate_catalogue(database, movies, users, ratings, seed, progress=update)
    finally:
        database.dispose()
    console.print(
        f"generated {summary.movies} movies, {summary.users} users, {summary.ratings} ratings "
        f"({summary.preferences} users with stated genres) in {summary.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )


@import_app.command("movielens")
def movielens(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="Directory of one release: ml-100k, ml-1m, ml-latest-small, …")
    ],
    source: Annotated[
        str | None, typer.Option(help="Tag stored with the rows [the directory's name].")
    ] = None,
) -> None:
    """Import a MovieLens release; all of it or, on any error, nothing."""
    database = Database(settings_from(ctx))
    try:
        with progress_bar("reading") as update:
            summary = import_movielens(database, path, progress=update, source=source)
    finally:
        database.dispose()
    console.print(
        f"imported {summary.source}: {summary.movies} movies, {summary.users} users, "
        f"{summary.ratings} ratings in {summary.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
