"""online evaluation and the operator's dashboard: impressions, and an audit of admin actions

Revision ID: 0012
Revises: 0011

* ``impressions``: one row per recommendation list shown to a sampled user (the site records
  a list when it is computed, not on every view of a kept copy, and only for the fraction
  ``impression_sample`` of users, chosen by their id so a user's whole sequence is kept or
  none of it). The shown movies are one array in the row, in rank order: a list costs one
  small row, not one row per movie. Later ratings and "not interested" clicks of the same
  user, joined to these rows, give the online hit rate and NDCG per model version
  (:mod:`movierec.db.online_eval`). Not in the change history (a rollback must not bring
  back or remove what was shown); a deleted account's impressions go with it (the foreign
  key cascades).
* ``admin_audit``: one row per action taken on the operator's dashboard (a rollback's dry
  run and its application, a model rollback), who took it, on what, and how it ended.

The site's role may insert and read both (it records impressions and audit entries and shows
them to admins); it may neither change nor delete an audit row.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WEB = "movierec_web"


def upgrade() -> None:
    op.create_table(
        "impressions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column(
            "shown_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("movie_ids", ARRAY(sa.BigInteger), nullable=False),
    )
    op.create_index("impressions_version_shown_at", "impressions", ["model_version", "shown_at"])
    op.create_index("impressions_user_shown_at", "impressions", ["user_id", "shown_at"])
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=True),  # kept after the account goes
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("admin_audit_at", "admin_audit", ["at"])
    op.execute(sa.text(f"GRANT SELECT, INSERT ON impressions, admin_audit TO {WEB}"))


def downgrade() -> None:
    op.drop_table("admin_audit")
    op.drop_table("impressions")
