"""The ``movierec`` admin command: this module only registers the command groups."""

from __future__ import annotations

import typer
from rich.markup import escape
from typer.core import TyperGroup

from movierec.cli import backup, cluster, data, db, demo, director, model, serve, users
from movierec.cli.common import debug_enabled, err_console
from movierec.config import load_settings
from movierec.errors import MovierecError
from movierec.redact import redact


class OneLineErrors(TyperGroup):
    """Turn every :class:`MovierecError` into one line on stderr and exit status 1, with
    any password in it hidden (:mod:`movierec.redact`).

    Sub-commands run inside the root group's ``invoke``, so catching here covers them all,
    both from the shell and under typer's CliRunner. ``MOVIEREC_DEBUG=1`` keeps tracebacks.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MovierecError as exc:
            if debug_enabled():
                raise
            err_console.print(
                f"[red]error:[/red] {escape(redact(str(exc)))}", highlight=False, soft_wrap=True
            )
            ctx.exit(1)


app = typer.Typer(
    cls=OneLineErrors,
    help="movierec: movie recommendations from PostgreSQL, surprise models and a Flask site.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(data.app, name="data")
app.add_typer(model.app, name="model")
app.add_typer(serve.app, name="serve")
app.add_typer(backup.app, name="backup")
app.add_typer(director.app, name="director")
app.add_typer(cluster.app, name="cluster")
app.add_typer(users.app, name="users")
app.command("demo")(demo.demo)


@app.callback()
def root(ctx: typer.Context) -> None:
    """Settings come from MOVIEREC_* variables and an optional movierec.toml."""
    ctx.obj = load_settings()


def main() -> None:
    app()
