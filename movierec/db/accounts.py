"""Accounts as an administrator manages them (``movierec users``): list, show, create, the
admin role, locks, and deleting an account, and forgetting it: the one function the site's
"delete my account" and the admin's ``movierec users delete`` call.

Locking an account keeps its data and closes every way in: ``locked_at`` is set (the site's
user loader and both logins refuse a locked account), the session generation is raised (every
login session of it ends, wherever its cookie is) and its API tokens are deleted. Unlocking
opens the account again; the sessions and tokens stay ended.

The account's row goes, and with it (by cascade) everything of it: ratings, searches,
preferences, dismissals, identities, tokens; the history records those deletions as usual.
Then every history row of the account (its own row's images, its ratings' and preferences')
is purged, and one ``FORGET`` marker says that it was: personal data does not outlive the
account in the history (the right to be forgotten), and no rollback can bring the account
back. It runs as ``movierec_forget_account``, a SECURITY DEFINER function of the owner (no
app role may delete history rows itself), which the site's role may execute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from movierec.db.partitions.rows import plan_for_values
from movierec.db.schema import ApiToken, Identity, Rating, User
from movierec.errors import BadInput, NotFound

NO_ACCOUNT = "MRH02"  # SQLSTATE raised by movierec_forget_account()


def delete_account(session: Session, user_id: int) -> int:
    """Delete account ``user_id`` and purge it from the change history, in the session's
    transaction (the caller commits; set the actor first with
    :func:`movierec.db.history.set_actor`). Returns how many history rows were purged.

    Raises :class:`NotFound` when there is no such account.
    """
    plan_for_values(session)  # the cascade deletes from partitioned tables, shards included
    try:
        with session.begin_nested():
            return session.scalar(text("SELECT movierec_forget_account(:id)"), {"id": user_id})
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != NO_ACCOUNT:
            raise
        raise NotFound(f"no account with id {user_id}") from exc


@dataclass(frozen=True)
class Account:
    """What an administrator sees of an account (never its password hash or tokens)."""

    id: int
    username: str
    display_name: str | None
    email: str | None
    is_admin: bool
    locked_at: datetime | None
    created_at: datetime
    has_password: bool
    providers: tuple[str, ...]  # linked OAuth / OpenID Connect providers
    ratings: int
    api_tokens: int


def _accounts():
    providers = (
        select(func.array_agg(Identity.provider))
        .where(Identity.user_id == User.id)
        .scalar_subquery()
    )
    ratings = select(func.count()).where(Rating.user_id == User.id).scalar_subquery()
    tokens = select(func.count()).where(ApiToken.user_id == User.id).scalar_subquery()
    return select(
        User.id, User.username, User.display_name, User.email, User.is_admin, User.locked_at,
        User.created_at, User.password_hash.isnot(None), providers, ratings, tokens,
    )  # fmt: skip


def _account(row) -> Account:
    *head, providers, ratings, tokens = row
    return Account(*head, tuple(sorted(providers or ())), ratings, tokens)


def list_accounts(
    session: Session, admins_only: bool = False, locked_only: bool = False, limit: int = 100
) -> list[Account]:
    """Accounts, oldest first, at most ``limit``."""
    query = _accounts().order_by(User.id).limit(limit)
    if admins_only:
        query = query.where(User.is_admin)
    if locked_only:
        query = query.where(User.locked_at.isnot(None))
    return [_account(row) for row in session.execute(query)]


def find_account(session: Session, who: str) -> Account:
    """The account named ``who``: a username, or ``#<id>`` / a number that is no username.

    Raises :class:`NotFound` when there is none."""
    who = who.strip()
    row = session.execute(_accounts().where(User.username == who)).first()
    digits = who.removeprefix("#")
    if row is None and digits.isdigit() and int(digits) < 2**63:
        row = session.execute(_accounts().where(User.id == int(digits))).first()
    if row is None:
        raise NotFound(f"no account {who!r}")
    return _account(row)


def create_account(session: Session, username: str, password_hash: str, admin: bool) -> int:
    """A new account with a password; its id. The caller checks the username and password
    first (:mod:`movierec.wire.accounts`) and hashes the password as the site does.

    Raises :class:`BadInput` when the username is taken."""
    user_id = session.scalar(
        pg_insert(User)
        .values(username=username, password_hash=password_hash, is_admin=admin)
        .on_conflict_do_nothing(index_elements=[User.username])
        .returning(User.id)
    )
    if user_id is None:
        raise BadInput(f"the username {username!r} is taken")
    return user_id


def set_admin(session: Session, user_id: int, admin: bool) -> bool:
    """Give or take the admin role; False when the account had it (or not) already."""
    result = session.execute(
        update(User).where(User.id == user_id, User.is_admin.isnot(admin)).values(is_admin=admin)
    )
    return bool(result.rowcount)


def lock(session: Session, user_id: int) -> bool:
    """Lock the account: nobody may log in to it, and its sessions and API tokens end now.
    False when it was locked already (its sessions and tokens are ended again all the same)."""
    session.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
    was_open = session.scalar(select(User.locked_at.is_(None)).where(User.id == user_id))
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            locked_at=func.coalesce(User.locked_at, func.now()),
            # The site's user loader refuses a session of an older generation.
            session_generation=User.session_generation + 1,
        )
    )
    return bool(was_open)


def unlock(session: Session, user_id: int) -> bool:
    """Open a locked account again; False when it was not locked."""
    result = session.execute(
        update(User).where(User.id == user_id, User.locked_at.isnot(None)).values(locked_at=None)
    )
    return bool(result.rowcount)
