"""app roles: the site and the recommender connect with the privileges they need, no more

Revision ID: 0007
Revises: 0006

Two login roles, made unless they exist (roles belong to the whole server, not to one
database), with no password: an admin gives them one (``ALTER ROLE ... PASSWORD``) where the
server asks for passwords.

* ``movierec_web`` (the site): reads and writes the users' rows (accounts, identities, tokens,
  ratings, searches, preferences, dismissals), reads the movies. It may not change a movie,
  the partition registry or the history, truncate, alter or drop anything, or skip triggers.
* ``movierec_ai`` (the recommender servers): reads a user's ratings, preferences and searches.

The owner (who runs migrations and the admin CLI) keeps every other privilege.

What the triggers do for a writer:

* The history trigger runs as the writer, so ``movierec_web`` may insert into
  ``change_history`` (and only that: it cannot change or delete what was recorded).
* The reference triggers that replaced the foreign keys of the partitioned tables lock the
  parent row (``FOR KEY SHARE``, which PostgreSQL allows only to who may update that table)
  and delete child rows after their parent. A real foreign key does both as the table's
  owner; so do they now (SECURITY DEFINER, with a fixed search_path).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WEB, AI = "movierec_web", "movierec_ai"
WEB_WRITES = (
    "users", "identities", "oauth_tokens", "api_tokens",
    "ratings", "searches", "preferences", "not_interested",
)  # fmt: skip
WEB_READS = (*WEB_WRITES, "movies")
AI_READS = ("ratings", "preferences", "searches")
OWNED_SEQUENCES = """
SELECT s.oid::regclass::text FROM pg_class s
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  JOIN pg_class t ON t.oid = d.refobjid
 WHERE s.relkind = 'S' AND t.relnamespace = 'public'::regnamespace
   AND t.relname = ANY(:tables)
 ORDER BY 1
"""
# The trigger functions of the references that replaced foreign keys (see 0004).
REFERENCE_FUNCTIONS = """
SELECT p.oid::regprocedure::text FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND (p.proname LIKE 'movierec\\_ref\\_%' OR p.proname LIKE 'movierec\\_cascade\\_%')
 ORDER BY 1
"""


def _exec(statement: str) -> None:
    op.execute(sa.text(statement))


def _make_role(name: str) -> None:
    # CREATE ROLE has no IF NOT EXISTS; another database of this server may have made it.
    _exec(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
                CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
            END IF;
        END $$
        """
    )


def _owned_sequences(tables: tuple[str, ...]) -> list[str]:
    """The sequences of the serial and identity columns of ``tables``."""
    found = op.get_bind().execute(sa.text(OWNED_SEQUENCES), {"tables": list(tables)})
    return list(found.scalars())


def _reference_functions() -> list[str]:
    return list(op.get_bind().execute(sa.text(REFERENCE_FUNCTIONS)).scalars())


def upgrade() -> None:
    for role in (WEB, AI):
        _make_role(role)
        _exec(f"GRANT USAGE ON SCHEMA public TO {role}")
    _exec(f"GRANT SELECT ON {', '.join(WEB_READS)} TO {WEB}")
    _exec(f"GRANT INSERT, UPDATE, DELETE ON {', '.join(WEB_WRITES)} TO {WEB}")
    _exec(f"GRANT INSERT ON change_history TO {WEB}")
    for sequence in _owned_sequences(WEB_WRITES):
        _exec(f"GRANT USAGE ON SEQUENCE {sequence} TO {WEB}")
    _exec(f"GRANT SELECT ON {', '.join(AI_READS)} TO {AI}")
    for function in _reference_functions():
        _exec(f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = public, pg_temp")


def downgrade() -> None:
    for function in _reference_functions():
        _exec(f"ALTER FUNCTION {function} SECURITY INVOKER RESET search_path")
    # The roles stay: other databases of the server may use them.
    for role in (WEB, AI):
        _exec(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        _exec(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        _exec(f"REVOKE USAGE ON SCHEMA public FROM {role}")
