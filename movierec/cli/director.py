"""``movierec director``."""

import typer

app = typer.Typer(help="director commands.", no_args_is_help=True)
