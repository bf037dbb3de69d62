"""The audit of dashboard actions (``admin_audit``, migration 0012): one row per action, in
its own transaction on the site's role, before the page answers.

An action is recorded whatever its outcome (``done``, ``dry run``, ``refused: <why>``), so
a refused or failed attempt is on record too. The site's role may insert and read audit rows,
never change or delete them.
"""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from sqlalchemy import select

from movierec.db.schema import AdminAudit
from movierec.redact import redact
from movierec.web.db import database, read_session

SHOWN = 20


def write(action: str, target: str, outcome: str, **detail: Any) -> None:
    """Record that the logged-in admin took ``action`` on ``target`` with ``outcome``.
    Raises :class:`DatabaseUnavailable` (the action's page then answers 503)."""
    with database().session() as session:
        session.add(
            AdminAudit(
                user_id=current_user.id,
                username=current_user.username,
                action=action,
                target=target,
                outcome=redact(outcome)[:500],
                detail=detail,
            )
        )


def recent(limit: int = SHOWN) -> list[AdminAudit]:
    """The newest audit rows, newest first. Raises :class:`DatabaseUnavailable`."""
    with read_session() as session:
        rows = session.scalars(select(AdminAudit).order_by(AdminAudit.id.desc()).limit(limit))
        found = list(rows)
        session.expunge_all()
    return found
