"""``movierec serve``: run the web site or a recommender server under gunicorn."""

import typer

app = typer.Typer(help="Serve the web site or a recommender (AI) server.", no_args_is_help=True)
