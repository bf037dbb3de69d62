"""history: a role that may not rewrite the history may blame only a site user

Revision ID: 0009
Revises: 0008

The history's actor is the session setting ``movierec.actor`` (``user:<id>`` from the site,
``admin:<os user>`` from the CLI), else the database role. Any role may set such a setting, so
the site's role (``movierec_web``) could have put its writes down to an admin. Now only a role
that may delete history rows anyway (the owner, an admin; as in 0008) may claim any actor; any
other may claim ``user:<id>``, and another claim of its is recorded as
``<role> (claimed <claim>)``: neither lost nor believed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHECKED = """
CREATE OR REPLACE FUNCTION movierec_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN claim IS NULL THEN current_user::text
        WHEN claim ~ '^user:[0-9]+$' THEN claim
        WHEN has_table_privilege('change_history', 'DELETE') THEN claim
        ELSE current_user::text || ' (claimed ' || claim || ')'
    END
    FROM (SELECT nullif(current_setting('movierec.actor', true), '') AS claim) AS setting
$$
"""
# 0002's.
TRUSTED = """
CREATE OR REPLACE FUNCTION movierec_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('movierec.actor', true), ''), current_user::text)
$$
"""


def upgrade() -> None:
    op.execute(sa.text(CHECKED))


def downgrade() -> None:
    op.execute(sa.text(TRUSTED))
