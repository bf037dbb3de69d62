"""admins index: the admin page counts its admins without reading every user

Revision ID: 0016
Revises: 0015

The admin page shows how many users are admins. ``count(*) WHERE is_admin`` read every row
of ``users``: 180 ms per page view at a million users (a parallel sequential scan, for a
handful of admins; bench/bench_scale.py's admin page p50 was 356 ms). A partial index of the
admins' ids makes it a scan of those few rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("CREATE INDEX users_admins_idx ON users (id) WHERE is_admin"))


def downgrade() -> None:
    op.execute(sa.text("DROP INDEX users_admins_idx"))
