"""Accounts and the provider identities linked to them: create, link, unlink, delete.

An account can be logged into by its password and by each linked identity (one per provider);
the last of these ways in cannot be removed. A provider's verified email that belongs to an
existing account never logs into it by itself: the person must log in to that account first and
link the provider from the account page, so whoever controls an email address at some provider
cannot take over the movierec account registered with it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from movierec.db import accounts
from movierec.db.schema import Identity, OAuthToken, User
from movierec.errors import BadInput
from movierec.web.auth.providers import Profile
from movierec.web.users import new_user_id

try:  # the change history (migration 0002) names who made each change
    from movierec.db.history import set_actor as _set_actor
except ImportError:  # pragma: no cover - only before the history module exists
    _set_actor = None

USERNAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class LinkedIdentity:
    provider: str
    email: str | None
    created_at: datetime


def blame(session: Session, user_id: int) -> None:
    """Record this transaction's changes in the history as the user's own (``user:<id>``)."""
    actor = f"user:{user_id}"
    if _set_actor is not None:
        _set_actor(session, actor)
    else:  # pragma: no cover
        session.execute(text("SELECT set_config('movierec.actor', :a, true)"), {"a": actor})


def identity_owner(session: Session, provider: str, subject: str) -> User | None:
    return session.scalar(
        select(User)
        .join(Identity, Identity.user_id == User.id)
        .where(Identity.provider == provider, Identity.subject == subject)
    )


def identities_of(session: Session, user_id: int) -> list[LinkedIdentity]:
    rows = session.execute(
        select(Identity.provider, Identity.email, Identity.created_at)
        .where(Identity.user_id == user_id)
        .order_by(Identity.created_at, Identity.id)
    )
    return [LinkedIdentity(*row) for row in rows]


def account_with_email(session: Session, email: str) -> int | None:
    """The id of an account registered with ``email`` (any case), if there is one."""
    return session.scalar(
        select(User.id).where(func.lower(User.email) == email.lower()).order_by(User.id).limit(1)
    )


def create_account(session: Session, provider: str, profile: Profile) -> User:
    """A new account for someone who signed in at ``provider``, linked to that identity.

    The username comes from the provider (their login or email name), made unique.
    """
    user_id, inserted = new_user_id(session), None
    blame(session, user_id)  # before the insert, which the history records as the user's
    for username in _username_candidates(provider, profile):
        inserted = session.scalar(
            insert(User)
            .values(
                id=user_id,
                username=username,
                display_name=(profile.name or "")[:128] or None,
                email=profile.verified_email,
            )
            .on_conflict_do_nothing(index_elements=[User.username])
            .returning(User.id)
        )
        if inserted is not None:
            break
    assert inserted is not None  # the last candidate is random
    _add_identity(session, user_id, provider, profile)
    return session.get_one(User, user_id)


def link(session: Session, user_id: int, provider: str, profile: Profile) -> None:
    """Link the identity to the user. Raises :class:`BadInput` saying why it cannot be."""
    owner = identity_owner(session, provider, profile.subject)
    if owner is not None:
        if owner.id == user_id:
            raise BadInput("That account is already linked to yours.")
        raise BadInput("That account is already linked to another movierec account.")
    if any(i.provider == provider for i in identities_of(session, user_id)):
        raise BadInput("You have linked another account there already; unlink it first.")
    blame(session, user_id)
    _add_identity(session, user_id, provider, profile)


def unlink(session: Session, user_id: int, provider: str) -> None:
    """Remove the user's identity at ``provider`` and its stored token.

    Raises :class:`BadInput` when none is linked or when it is the last way to log in.
    """
    linked = identities_of(session, user_id)
    if not any(i.provider == provider for i in linked):
        raise BadInput("No account of yours is linked there.")
    has_password = session.scalar(select(User.password_hash).where(User.id == user_id))
    if len(linked) == 1 and not has_password:
        raise BadInput("That is your only way to log in: set a password or link another first.")
    blame(session, user_id)
    session.execute(
        delete(Identity).where(Identity.user_id == user_id, Identity.provider == provider)
    )
    session.execute(
        delete(OAuthToken).where(OAuthToken.user_id == user_id, OAuthToken.provider == provider)
    )


def delete_account(session: Session, user_id: int) -> None:
    """Delete the user and, by cascade, everything of theirs (ratings, searches, preferences,
    identities, tokens), and purge it from the change history
    (:func:`movierec.db.accounts.delete_account`), as the user's own doing."""
    blame(session, user_id)
    accounts.delete_account(session, user_id)


def _add_identity(session: Session, user_id: int, provider: str, profile: Profile) -> None:
    session.add(
        Identity(user_id=user_id, provider=provider, subject=profile.subject, email=profile.email)
    )
    session.flush()


def _username_candidates(provider: str, profile: Profile) -> list[str]:
    hints = [profile.username_hint, (profile.email or "").partition("@")[0], profile.name]
    base = next(
        (name for name in (USERNAME_CHARS.sub("", h or "")[:56] for h in hints) if len(name) >= 3),
        f"{provider}-user",
    )
    return [base, *(f"{base}-{n}" for n in range(2, 10)), f"{base}-{secrets.token_hex(4)}"]
