"""change notifications: NOTIFY movierec_user_changes with the user id of every row written

Revision ID: 0006
Revises: 0005

Row triggers on ``users`` and on the tables a user's recommendations depend on (``ratings``,
``preferences``, ``not_interested``). Triggers on the partitioned tables are cloned by
PostgreSQL to every partition, present and future, local or foreign. They are ordinary
(ENABLE ORIGIN) triggers: a bulk load that runs with ``session_replication_role = replica``
skips them and notifies ``*`` once instead. What listens, and why, is in
``movierec/db/notifications.py``; the SQL is written out here so that the migration stays
what it was when it ran.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = (("users", "id"), ("ratings", "user_id"), ("preferences", "user_id"))
TABLES += (("not_interested", "user_id"),)

# One function per key column name: NEW.<column> must be static for plpgsql to cache the plan.
FUNCTION = """
CREATE FUNCTION movierec_notify_{column}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- Both ids when a row moves from one user to another.
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('movierec_user_changes', CAST(OLD.{column} AS text));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('movierec_user_changes', CAST(NEW.{column} AS text));
    END IF;
    RETURN NULL;
END $fn$
"""


def upgrade() -> None:
    for column in sorted({column for _, column in TABLES}):
        op.execute(sa.text(FUNCTION.format(column=column)))
    for table, column in TABLES:
        op.execute(
            sa.text(
                f"CREATE TRIGGER movierec_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION movierec_notify_{column}()"
            )
        )


def downgrade() -> None:
    for table, _ in TABLES:
        op.execute(sa.text(f"DROP TRIGGER movierec_notify ON {table}"))
    for column in sorted({column for _, column in TABLES}):
        op.execute(sa.text(f"DROP FUNCTION movierec_notify_{column}()"))
