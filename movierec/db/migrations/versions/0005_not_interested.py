"""not interested: movies a user dismissed from their recommendations

Revision ID: 0005
Revises: 0004

``not_interested`` is small and read one user at a time, so it stays an ordinary table
(not partitioned): its primary key (user_id, movie_id) and its foreign key to ``users`` are
real constraints. ``movies`` is partitioned and has no unique index to point at, so
``movie_id`` is not a foreign key: a dismissed movie that is deleted later simply stops
matching anything.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "not_interested",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("movie_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "movie_id"),
    )


def downgrade() -> None:
    op.drop_table("not_interested")
