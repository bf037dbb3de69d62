"""sessions and tokens end: logged-out session ids, and an expiry on every API token

Revision ID: 0011
Revises: 0010

* ``ended_sessions``: the id of each login session that was logged out, kept until the
  session could no longer be used anyway (its absolute lifetime, ``expires_at``). The site's
  user loader refuses a session whose id is here. A row notifies its user's change (0006's
  trigger function), so every web worker re-checks that user's sessions at once instead of
  trusting its cached copy. Not in the change history: a rollback must never bring an ended
  session back (nor keep session ids).
* ``api_tokens.expires_at``: tokens stop working then. Tokens made before this migration
  never expired; they get 90 days from when they were made (already past for old ones).

The site's role may insert ended sessions (logging out), read them (the user loader) and
delete the expired ones.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WEB = "movierec_web"


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ended_sessions_expires_at", "ended_sessions", ["expires_at"])
    op.execute(
        sa.text(
            "CREATE TRIGGER movierec_notify AFTER INSERT OR UPDATE OR DELETE ON ended_sessions "
            "FOR EACH ROW EXECUTE FUNCTION movierec_notify_user_id()"
        )
    )
    op.execute(sa.text(f"GRANT SELECT, INSERT, DELETE ON ended_sessions TO {WEB}"))
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.execute(sa.text("UPDATE api_tokens SET expires_at = created_at + interval '90 days'"))
    op.alter_column("api_tokens", "expires_at", nullable=False)


def downgrade() -> None:
    op.drop_column("api_tokens", "expires_at")
    op.drop_table("ended_sessions")
