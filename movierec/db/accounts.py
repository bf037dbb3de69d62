"""Deleting an account, and forgetting it: the one function the site's "delete my account" and
the admin's ``movierec users delete`` call.

The account's row goes, and with it (by cascade) everything of it: ratings, searches,
preferences, dismissals, identities, tokens; the history records those deletions as usual.
Then every history row of the account (its own row's images, its ratings' and preferences')
is purged, and one ``FORGET`` marker says that it was: personal data does not outlive the
account in the history (the right to be forgotten), and no rollback can bring the account
back. It runs as ``movierec_forget_account``, a SECURITY DEFINER function of the owner (no
app role may delete history rows itself), which the site's role may execute.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from movierec.db.partitions.rows import plan_for_values
from movierec.errors import NotFound

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
