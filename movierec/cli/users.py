"""``movierec users``: accounts from the command line (list, show, create, the admin role,
locks, delete). Each command parses, calls :mod:`movierec.db.accounts` and prints; changes are
recorded in the history as ``admin:<os user>``. Passwords never come from argv: a hidden
prompt, or a file only its owner should read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from movierec.cli.common import console
from movierec.cli.db_history import admin_session
from movierec.db import accounts
from movierec.errors import BadInput
from movierec.web.auth import Passwords
from movierec.wire.accounts import read_new_password, read_username

app = typer.Typer(
    help="Accounts: list, show, create, grant or revoke admin, lock, unlock, delete.",
    no_args_is_help=True,
)
WHO = typer.Argument(metavar="USER", help="A username, or #id.")


@app.command("list")
def list_(
    ctx: typer.Context,
    admins: Annotated[bool, typer.Option("--admins", help="Only administrators.")] = False,
    locked: Annotated[bool, typer.Option("--locked", help="Only locked accounts.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
) -> None:
    """The accounts, oldest first."""
    with admin_session(ctx, readonly=True) as session:
        found = accounts.list_accounts(session, admins, locked, limit)
    if not found:
        console.print("no accounts")
        return
    table = Table(box=box.SIMPLE)
    for column in ("id", "username", "role", "state", "logins", "ratings", "created"):
        table.add_column(column, justify="right" if column in ("id", "ratings") else "left")
    for a in found:
        table.add_row(
            str(a.id), a.username, _role(a), _state(a), _logins(a), str(a.ratings),
            a.created_at.strftime("%Y-%m-%d"),
        )  # fmt: skip
    console.print(table)


@app.command()
def show(ctx: typer.Context, who: Annotated[str, WHO]) -> None:
    """One account: role, state, ways in, how much it holds."""
    with admin_session(ctx, readonly=True) as session:
        a = accounts.find_account(session, who)
    lines = [
        f"account {a.id}: {a.username}",
        f"name: {a.display_name or '-'}  email: {a.email or '-'}",
        f"role: {_role(a)}  state: {_state(a)}"
        + (f" since {a.locked_at.isoformat(timespec='seconds')}" if a.locked_at else ""),
        f"logins: {_logins(a)}  API tokens: {a.api_tokens}  ratings: {a.ratings}",
        f"created: {a.created_at.isoformat(timespec='seconds')}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)


@app.command()
def create(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="3 to 64 letters, digits, '.', '_' or '-'.")],
    admin: Annotated[bool, typer.Option("--admin", help="With the admin role.")] = False,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the password from this file's first line (else a hidden prompt).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Create an account with a password (the site's rules), optionally an administrator."""
    username = read_username(username)
    password = read_new_password(_password(password_file), username)
    # Hashed as the site hashes (argon2id with its default costs), so the site can check it.
    password_hash = Passwords().hasher.hash(password)
    with admin_session(ctx) as session:
        user_id = accounts.create_account(session, username, password_hash, admin)
    console.print(f"created account {user_id}: {username}" + (" (admin)" if admin else ""))


@app.command("grant-admin")
def grant_admin(ctx: typer.Context, who: Annotated[str, WHO]) -> None:
    """Give the account the admin role."""
    _change(ctx, who, lambda s, a: accounts.set_admin(s, a.id, True), "is an admin now",
            "was an admin already")  # fmt: skip


@app.command("revoke-admin")
def revoke_admin(ctx: typer.Context, who: Annotated[str, WHO]) -> None:
    """Take the admin role from the account."""
    _change(ctx, who, lambda s, a: accounts.set_admin(s, a.id, False), "is no admin now",
            "was no admin")  # fmt: skip


@app.command()
def lock(ctx: typer.Context, who: Annotated[str, WHO]) -> None:
    """Lock the account: no login, and its sessions and API tokens end now (data kept)."""
    _change(ctx, who, lambda s, a: accounts.lock(s, a.id),
            "is locked; its sessions and API tokens have ended",
            "was locked already; its sessions and API tokens have ended")  # fmt: skip


@app.command()
def unlock(ctx: typer.Context, who: Annotated[str, WHO]) -> None:
    """Open a locked account again (its old sessions and tokens stay ended)."""
    _change(ctx, who, lambda s, a: accounts.unlock(s, a.id), "is unlocked", "was not locked")


@app.command()
def delete(
    ctx: typer.Context,
    who: Annotated[str, WHO],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to type the username.")] = False,
) -> None:
    """Delete the account and everything of it (ratings, searches, tokens...), and purge it
    from the change history: no rollback brings it back."""
    with admin_session(ctx) as session:
        account = accounts.find_account(session, who)
        if not yes:
            typed = typer.prompt(f"type the username ({account.username}) to delete it for good")
            if typed.strip() != account.username:
                raise BadInput("the typed username does not match; nothing was deleted")
        purged = accounts.delete_account(session, account.id)
    console.print(
        f"deleted account {account.id}: {account.username} ({purged} history rows purged)",
        highlight=False,
        markup=False,
    )


def _change(ctx: typer.Context, who: str, change, done: str, already: str) -> None:
    with admin_session(ctx) as session:
        account = accounts.find_account(session, who)
        changed = change(session, account)
    said = done if changed else already
    console.print(f"{account.username} {said}", highlight=False, markup=False)


def _password(path: Path | None) -> str:
    if path is None:
        return typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with path.open(encoding="utf-8") as f:
            return f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the password file {path}: {exc.strerror or exc}") from None


def _role(a: accounts.Account) -> str:
    return "admin" if a.is_admin else "user"


def _state(a: accounts.Account) -> str:
    return "locked" if a.locked_at else "open"


def _logins(a: accounts.Account) -> str:
    ways = (["password"] if a.has_password else []) + list(a.providers)
    return ", ".join(ways) or "none"
