"""account locks: ``users.locked_at``

Revision ID: 0013
Revises: 0012

An administrator locks an account (``movierec users lock``) when it must stop being used
without being deleted: its data stays, nobody can log in to it, and its sessions and tokens
end. ``locked_at`` says since when; NULL is an open account. The site's role reads it with
the rest of the user's row (the user loader refuses a locked account's sessions); the site
never sets it. It is an ordinary column of a tracked table: the change history
records who locked and unlocked an account and when.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locked_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("users", "locked_at")
