"""``movierec director``: HAProxy in front of the web instances; thin calls into
:mod:`movierec.director`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from movierec import director as lib
from movierec.cli.common import console, settings_from
from movierec.config import Settings
from movierec.errors import BadInput

app = typer.Typer(
    help="The director: HAProxy in front of several web instances (health checks, balancing, "
    "graceful reloads). Two can run side by side under different --name.",
    no_args_is_help=True,
)

Name = Annotated[
    str, typer.Option("--name", help="Which director: two (d1, d2) can serve the same site.")
]


@app.command()
def start(
    ctx: typer.Context,
    name: Name = lib.DEFAULT_NAME,
    port: Annotated[
        int | None, typer.Option(help="Port the site is served on [the saved one].")
    ] = None,
    backend: Annotated[
        list[str] | None,
        typer.Option(help="A web instance, NAME=HOST:PORT; repeat for each one."),
    ] = None,
    backup: Annotated[
        list[str] | None,
        typer.Option(help="NAME=HOST:PORT used only when no --backend is up; repeatable."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    stats_port: Annotated[
        int | None, typer.Option(help="Serve the stats page on 127.0.0.1:PORT/stats.")
    ] = None,
    balance: Annotated[str, typer.Option(help="roundrobin or leastconn.")] = "roundrobin",
) -> None:
    """Start a director. Without --port and --backend, start the one saved under --name."""
    settings = settings_from(ctx)
    if port is None and not backend and not backup:
        state = lib.load_state(settings, name)
    else:
        if port is None:
            raise BadInput("--port is required with --backend")
        backends = [lib.parse_backend(spec) for spec in backend or []]
        backends += [lib.parse_backend(spec, backup=True) for spec in backup or []]
        state = lib.DirectorState(
            name,
            port,
            tuple(backends),
            host=host,
            stats_port=stats_port,
            balance=balance,
        )
    pid = lib.start(settings, state)
    stats = f", stats http://127.0.0.1:{state.stats_port}/stats" if state.stats_port else ""
    console.print(
        f"director {name} serving http://{state.host}:{state.port} (pid {pid}){stats}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("add-backend")
def add_backend(
    ctx: typer.Context,
    backend: Annotated[str, typer.Argument(help="Name of the new web instance.")],
    address: Annotated[str, typer.Argument(help="HOST:PORT of the web instance.")],
    backup: Annotated[bool, typer.Option(help="Use it only when no primary is up.")] = False,
    name: Name = lib.DEFAULT_NAME,
) -> None:
    """Add a web instance, then reload the director gracefully (if it runs)."""
    settings = settings_from(ctx)
    item = lib.parse_address(backend, address, backup)
    lib.add_backend(settings, name, item)
    _print_applied(settings, name, f"added {item.name} ({item.address})")


@app.command("remove-backend")
def remove_backend(
    ctx: typer.Context,
    backend: Annotated[str, typer.Argument(help="Name of the web instance to remove.")],
    name: Name = lib.DEFAULT_NAME,
) -> None:
    """Remove a web instance; the requests it is serving complete first."""
    settings = settings_from(ctx)
    lib.remove_backend(settings, name, backend)
    _print_applied(settings, name, f"removed {backend}")


def _print_applied(settings: Settings, name: str, what: str) -> None:
    running = lib.running_pid(lib.director_files(settings, name)) is not None
    tail = "director reloaded" if running else "used when the director starts"
    console.print(f"{what}: {tail}", highlight=False)


@app.command()
def reload(ctx: typer.Context, name: Name = lib.DEFAULT_NAME) -> None:
    """Re-render haproxy.cfg and reload gracefully: no request is dropped or refused."""
    lib.reload(settings_from(ctx), name)
    console.print(f"director {name} reloaded", highlight=False)


@app.command()
def status(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Option("--name", help="One director [every saved one].")
    ] = None,
) -> None:
    """Each backend's health (UP/DOWN), open sessions and requests served."""
    settings = settings_from(ctx)
    names = [name] if name else lib.known_directors(settings)
    if not names:
        console.print("no director has been started here")
        return
    for each in names:
        _print_status(lib.status(settings, each))


def _print_status(result: lib.DirectorStatus) -> None:
    state = result.state
    where = f"http://{state.host}:{state.port}, balance {state.balance}"
    if not result.running:
        console.print(f"director {state.name}: stopped ({where})", highlight=False)
        return
    table = Table(title=f"director {state.name}: running, pid {result.pid}, {where}")
    for column in ("backend", "address", "role", "status", "check", "sessions", "requests"):
        table.add_column(column, justify="right" if column in ("sessions", "requests") else "left")
    colours = {"UP": "green", "DOWN": "red"}
    for b in result.backends:
        colour = colours.get(b.status.split()[0], "yellow")
        table.add_row(
            b.name,
            b.address,
            "backup" if b.backup else "primary",
            f"[{colour}]{b.status}[/{colour}]",
            b.check,
            str(b.sessions),
            str(b.requests),
        )
    console.print(table)


@app.command()
def stop(ctx: typer.Context, name: Name = lib.DEFAULT_NAME) -> None:
    """Stop a director after the requests in flight complete; its saved state is kept."""
    stopped = lib.stop(settings_from(ctx), name)
    console.print(f"director {name} {'stopped' if stopped else 'was not running'}")
