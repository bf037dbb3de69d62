"""Personal API tokens for scripts: ``Authorization: Bearer mrt_<prefix>_<secret>``.

A token is shown once, when it is made; the database keeps its prefix (to find the row) and the
SHA-256 of the whole token. Every token expires (``api_token_days`` unless its maker chose
another lifetime, at most ``api_token_max_days``), and all of a user's tokens are revoked when
they change their password or log out everywhere
(:func:`movierec.web.auth.sessions.end_all_sessions`).

A plain hash is enough here, unlike for passwords: the secret is 32
random bytes, so there is no dictionary to try, and hashing must stay cheap because every API
call checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from movierec.db.schema import ApiToken, User
from movierec.errors import BadInput

SCHEME = "mrt"
TOKEN = re.compile(rf"^{SCHEME}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
MAX_TOKENS = 20
MAX_NAME = 64
DEFAULT_DAYS = 90
MAX_DAYS = 365
# last_used_at is written at most this often per token: one write per API call would be waste.
USE_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True)
class TokenInfo:
    """A token as the account page lists it (never the secret)."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime

    @property
    def hint(self) -> str:
        return f"{SCHEME}_{self.prefix}_…"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, user_id: int, name: str, days: int = DEFAULT_DAYS, max_days: int = MAX_DAYS
) -> str:
    """Make a token for the user, good for ``days``, and return it: the only time it is seen
    in full.

    Raises :class:`BadInput` for an empty or too long name, a lifetime not within 1 to
    ``max_days`` days, or when the user has too many tokens.
    """
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise BadInput(f"Give the token a name of 1 to {MAX_NAME} characters.")
    if not 1 <= days <= max_days:
        raise BadInput(f"A token lasts 1 to {max_days} days.")
    count = session.scalar(select(func.count()).where(ApiToken.user_id == user_id))
    if count >= MAX_TOKENS:
        raise BadInput(f"You have {MAX_TOKENS} tokens already; revoke one first.")
    while True:
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        token = f"{SCHEME}_{prefix}_{secret}"
        created = session.scalar(
            insert(ApiToken)
            .values(
                user_id=user_id,
                name=name,
                prefix=prefix,
                token_hash=_digest(token),
                expires_at=func.now() + timedelta(days=days),
            )  # fmt: skip
            .on_conflict_do_nothing(index_elements=[ApiToken.prefix])
            .returning(ApiToken.id)
        )
        if created is not None:  # else the prefix was taken: 1 in 2**48 per existing token
            return token


def tokens_of(session: Session, user_id: int) -> list[TokenInfo]:
    rows = session.execute(
        select(
            ApiToken.id,
            ApiToken.name,
            ApiToken.prefix,
            ApiToken.created_at,
            ApiToken.last_used_at,
            ApiToken.expires_at,
        )
        .where(ApiToken.user_id == user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return [TokenInfo(*row) for row in rows]


def revoke_token(session: Session, user_id: int, token_id: int) -> bool:
    """Delete one of the user's tokens; False when they have no such token."""
    result = session.execute(
        delete(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
    )
    return bool(result.rowcount)


def user_for_token(session: Session, token: str) -> User | None:
    """The owner of ``token``, or None when it is malformed, unknown, expired or revoked."""
    match = TOKEN.match(token)
    if match is None:
        return None
    row = session.execute(
        select(ApiToken.id, ApiToken.token_hash, ApiToken.user_id).where(
            ApiToken.prefix == match.group(1), ApiToken.expires_at > func.now()
        )
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, _digest(token)):
        return None
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == row.id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < func.now() - USE_RESOLUTION,
            ),
        )
        .values(last_used_at=func.now())
    )
    return session.get(User, row.user_id)
