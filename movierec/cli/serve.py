"""``movierec serve``: run the web site or a recommender server under gunicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from movierec.cli.common import err_console, settings_from
from movierec.serving import serve

app = typer.Typer(help="Serve the web site or a recommender (AI) server.", no_args_is_help=True)

HostOption = Annotated[str | None, typer.Option(help="Address to bind (default: from settings).")]
PortOption = Annotated[int | None, typer.Option(help="Port to bind (default: from settings).")]
WorkersOption = Annotated[
    int | None, typer.Option(help="gunicorn worker processes (default: from settings).")
]


@app.command()
def web(
    ctx: typer.Context, host: HostOption = None, port: PortOption = None,
    workers: WorkersOption = None,
) -> None:  # fmt: skip
    """Serve the Flask site (needs MOVIEREC_DATABASE_URL and MOVIEREC_SECRET_KEY)."""
    settings = settings_from(ctx)
    settings.require("database_url", "secret_key")
    host, port = host or settings.web_host, port or settings.web_port
    err_console.print(f"web: http://{host}:{port}/", highlight=False)
    serve("web", settings, host, port, workers or settings.web_workers)


@app.command()
def ai(
    ctx: typer.Context, host: HostOption = None, port: PortOption = None,
    workers: WorkersOption = None,
) -> None:  # fmt: skip
    """Serve the recommender: the newest model in MOVIEREC_MODEL_DIR, /recommend and /similar."""
    settings = settings_from(ctx)
    host, port = host or settings.ai_host, port or settings.ai_port
    err_console.print(f"ai: http://{host}:{port}/", highlight=False)
    serve("ai", settings, host, port, workers or settings.ai_workers)
