"""``movierec ... replica``."""

import typer

app = typer.Typer(help="replica commands.", no_args_is_help=True)
