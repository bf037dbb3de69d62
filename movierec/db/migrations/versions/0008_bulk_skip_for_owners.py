"""history: only a role that may rewrite the history may switch per-row recording off

Revision ID: 0008
Revises: 0007

A bulk load sets ``movierec.bulk_change_set`` for its transaction and the history trigger
then records nothing per row (see ``movierec/db/history.py``). Any role may set such a
setting, so the site's role (``movierec_web``, which may only add to the history) could have
made its writes leave no trace. The trigger now skips only for a role that may delete
history rows anyway (the owner, an admin); for any other, it records as usual.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# 0002's function, with what a bulk load's setting does as a placeholder.
FUNCTION = """
CREATE OR REPLACE FUNCTION movierec_history_record() RETURNS trigger LANGUAGE plpgsql AS $fn$
-- TG_ARGV[0] is the table's own name (not the partition's, should it be partitioned);
-- the other arguments are its primary key columns.
DECLARE
    v_row jsonb;
    v_key jsonb := '{{}}';
BEGIN
    -- A bulk load records one change set instead (a row trigger makes it ~15x slower).
    IF current_setting('movierec.bulk_change_set', true) <> '' THEN
        {skip}
    END IF;
    IF TG_OP = 'DELETE' THEN
        v_row := to_jsonb(OLD);
    ELSE
        v_row := to_jsonb(NEW);
    END IF;
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        v_key := v_key || jsonb_build_object(TG_ARGV[i], v_row -> TG_ARGV[i]);
    END LOOP;
    -- txid, changed_at, actor and change_set come from the column defaults.
    INSERT INTO change_history (table_name, op, row_key, old_row, new_row)
    VALUES (TG_ARGV[0], TG_OP, v_key,
            CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE v_row END);
    RETURN NULL;
END
$fn$
"""
# Asked only when the setting is set: ordinary writes pay nothing for it.
OWNERS_SKIP = "IF has_table_privilege('change_history', 'DELETE') THEN RETURN NULL; END IF;"


def upgrade() -> None:
    op.execute(sa.text(FUNCTION.format(skip=OWNERS_SKIP)))


def downgrade() -> None:
    op.execute(sa.text(FUNCTION.format(skip="RETURN NULL;")))
