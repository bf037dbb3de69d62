"""history: written only by the owner's definer functions, signed, without credentials

Revision ID: 0010
Revises: 0009

What the history promises is documented in ``movierec/db/history.py``; this migration makes
these changes (issue 19, items 2-4):

* Rows are written only by ``movierec_history_append`` (owner only), called by the row
  trigger ``movierec_history_record`` (now SECURITY DEFINER, fixed search_path) and for the
  markers. ``movierec_web`` loses INSERT on ``change_history``.
* Each row carries ``signature``: an HMAC-SHA256 of its contents under a key in
  ``history_secret`` that only the owner may read. Rollback acts only on rows whose signature
  checks; rows from before this migration carry none, and ``history_secret.signed_from``
  says where signed rows begin.
* The settings that change what is recorded (``movierec.bulk_change_set``,
  ``movierec.actor``, ``movierec.change_set``) are believed only when the *session* user may
  delete history rows (``movierec_history_trusted``): inside definer functions current_user
  is the owner, so asking about it believed the site. The actor of a session that claims
  nothing is its session user.
* ``history_tables`` says, per tracked table, which column names the account a row belongs
  to (``account_id`` of its history rows, so that deleting an account can purge them) and
  which columns are private: left out of the row images (``private_changed`` names those a
  change set or changed) and, when rollback re-inserts a row, given ``private_restore``
  instead of a value. Existing history is scrubbed of them here.
* ``movierec_forget_account(id)`` (definer, granted to the site) deletes an account and
  purges its rows from the history, leaving a ``FORGET`` marker.
* The plpgsql rollback functions of 0002 go: the rollback is set-based SQL built by
  ``movierec/db/history_rollback.py`` now.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

WEB = "movierec_web"
OPS = ("INSERT", "UPDATE", "DELETE", "ROLLBACK", "BULK", "TRUNCATE")
# The session generation of a re-inserted user: the Unix time of the rollback, above any count
# that "log out everywhere" and password changes reach, so no cookie of the old row matches.
PRIVATE = (
    ("users", "password_hash", "NULL"),
    ("users", "session_generation", "CAST(extract(epoch FROM now()) AS integer)"),
)

TABLES = (
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",  # hmac(), gen_random_bytes()
    """
    CREATE TABLE history_secret (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        key bytea NOT NULL,
        signed_from bigint NOT NULL
    )
    """,
    """
    CREATE TABLE history_tables (
        table_name text PRIMARY KEY,
        account_column text,
        private_columns text[] NOT NULL DEFAULT '{}',
        private_restore text[] NOT NULL DEFAULT '{}',
        CHECK (cardinality(private_columns) = cardinality(private_restore))
    )
    """,
    "ALTER TABLE change_history ADD COLUMN account_id bigint, "
    "ADD COLUMN private_changed text[], ADD COLUMN signature bytea",
    "ALTER TABLE change_history DROP CONSTRAINT change_history_op_check",
    "ALTER TABLE change_history ADD CONSTRAINT change_history_op_check "
    f"CHECK (op IN ({', '.join(repr(o) for o in (*OPS, 'FORGET'))}))",
    "CREATE INDEX change_history_account_idx ON change_history (account_id) "
    "WHERE account_id IS NOT NULL",
)

FUNCTIONS = (
    # Whether the session's own login may rewrite the history (the owner, a superuser): only
    # then are the settings that change what gets recorded believed. These small functions
    # name every object with its schema instead of fixing search_path (a SET clause would
    # stop PostgreSQL inlining them into the statements that call them, once per row).
    """
    CREATE FUNCTION movierec_history_trusted() RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT pg_catalog.has_table_privilege(session_user, 'public.change_history', 'DELETE')
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION movierec_actor() RETURNS text LANGUAGE sql STABLE AS $$
        SELECT CASE
            WHEN coalesce(pg_catalog.current_setting('movierec.actor', true), '') = ''
                THEN session_user::text
            WHEN pg_catalog.current_setting('movierec.actor', true) ~ '^user:[0-9]+$'
                 OR public.movierec_history_trusted()
                THEN pg_catalog.current_setting('movierec.actor', true)
            ELSE session_user::text || ' (claimed '
                 || pg_catalog.current_setting('movierec.actor', true) || ')'
        END
    $$
    """,
    """
    CREATE FUNCTION movierec_history_change_set() RETURNS bigint LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN pg_catalog.current_setting('movierec.change_set', true) <> ''
                         AND public.movierec_history_trusted()
                    THEN CAST(pg_catalog.current_setting('movierec.change_set', true) AS bigint)
               END
    $$
    """,
    # The HMAC of a history row's contents (all but the signature) under p_key (the key of
    # history_secret, read once by the caller). changed_at goes in as epoch seconds, since its
    # text form depends on the session's time zone.
    """
    CREATE FUNCTION movierec_history_signature(h change_history, p_key bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE AS $$
        SELECT public.hmac(pg_catalog.convert_to(pg_catalog.jsonb_build_array(
                   h.id, h.table_name, h.op, h.row_key, h.old_row, h.new_row, h.txid,
                   EXTRACT(epoch FROM h.changed_at), h.actor, h.change_set,
                   h.account_id, h.private_changed)::text, 'UTF8'), p_key, 'sha256')
    $$
    """,
    # The one way rows get into the history: numbered, stamped and signed here. Called by the
    # definer trigger function and, for markers, by the owner; every name carries its schema
    # (no SET search_path: it would cost each recorded row a configuration change).
    """
    CREATE FUNCTION movierec_history_append(
        p_table text, p_op text, p_key jsonb DEFAULT '{}', p_old jsonb DEFAULT NULL,
        p_new jsonb DEFAULT NULL, p_account bigint DEFAULT NULL,
        p_private text[] DEFAULT NULL,
        p_change_set bigint DEFAULT public.movierec_history_change_set()
    ) RETURNS bigint LANGUAGE plpgsql AS $fn$
    DECLARE
        h public.change_history;
        v_secret bytea;
    BEGIN
        SELECT s.key INTO STRICT v_secret FROM public.history_secret s;
        h.id := pg_catalog.nextval('public.change_history_id_seq');
        h.table_name := p_table;
        h.op := p_op;
        h.row_key := p_key;
        h.old_row := p_old;
        h.new_row := p_new;
        h.txid := pg_catalog.txid_current();
        h.changed_at := pg_catalog.now();
        h.actor := public.movierec_actor();
        h.change_set := p_change_set;
        h.account_id := p_account;
        h.private_changed := p_private;
        h.signature := public.movierec_history_signature(h, v_secret);
        INSERT INTO public.change_history OVERRIDING SYSTEM VALUE SELECT h.*;
        RETURN h.id;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION movierec_history_record() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
    -- TG_ARGV[0] is the table's own name (not the partition's, should it be partitioned);
    -- the other arguments are its primary key columns.
    DECLARE
        v_spec history_tables;
        v_old jsonb;
        v_new jsonb;
        v_key jsonb := '{}';
        v_changed text[];
    BEGIN
        -- A bulk load records one change set instead (a row trigger makes it ~15x slower).
        IF current_setting('movierec.bulk_change_set', true) <> ''
                AND movierec_history_trusted() THEN
            RETURN NULL;
        END IF;
        SELECT * INTO v_spec FROM history_tables WHERE table_name = TG_ARGV[0];
        IF TG_OP <> 'INSERT' THEN
            v_old := to_jsonb(OLD);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            v_new := to_jsonb(NEW);
        END IF;
        FOR i IN 1 .. TG_NARGS - 1 LOOP
            v_key := v_key || jsonb_build_object(TG_ARGV[i], coalesce(v_new, v_old) -> TG_ARGV[i]);
        END LOOP;
        IF cardinality(v_spec.private_columns) > 0 THEN
            SELECT array_agg(c ORDER BY c) INTO v_changed
              FROM unnest(v_spec.private_columns) AS c
             WHERE coalesce(v_old -> c, 'null') IS DISTINCT FROM coalesce(v_new -> c, 'null');
            v_old := v_old - v_spec.private_columns;
            v_new := v_new - v_spec.private_columns;
        END IF;
        PERFORM movierec_history_append(
            TG_ARGV[0], TG_OP, v_key, v_old, v_new,
            CAST(coalesce(v_new, v_old) ->> v_spec.account_column AS bigint), v_changed);
        RETURN NULL;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION movierec_forbid_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
        IF coalesce(current_setting('movierec.allow_truncate', true), '')
                NOT IN ('on', 'true', '1') THEN
            RAISE EXCEPTION 'TRUNCATE % refused: it would bypass the change history',
                TG_TABLE_NAME
                USING HINT = 'SET LOCAL movierec.allow_truncate = on to do it anyway; '
                             'only a backup can undo it';
        END IF;
        -- An allowed TRUNCATE of a tracked table leaves a marker rollback will not cross.
        IF TG_NARGS > 0 THEN
            PERFORM movierec_history_append(TG_ARGV[0], 'TRUNCATE');
        END IF;
        RETURN NULL;
    END
    $fn$
    """,
    # As in 0004, and the table's account column (itself for users; the column referring to
    # users otherwise) is registered in history_tables.
    """
    CREATE OR REPLACE FUNCTION movierec_history_track(p_table regclass) RETURNS void
    LANGUAGE plpgsql AS $fn$
    DECLARE
        v_name text := (SELECT relname FROM pg_class WHERE oid = p_table);
        v_args text;
    BEGIN
        SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY k.ord) INTO v_args
          FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = p_table AND i.indisprimary;
        IF v_args IS NULL THEN
            SELECT string_agg(quote_literal(u.col), ', ' ORDER BY u.ord) INTO v_args
              FROM partitioned_tables t
             CROSS JOIN LATERAL unnest(t.key_columns) WITH ORDINALITY AS u(col, ord)
             WHERE t.table_name = v_name;
        END IF;
        IF v_args IS NULL THEN
            RAISE EXCEPTION 'cannot track %: it has no primary key', p_table;
        END IF;
        INSERT INTO history_tables (table_name, account_column)
        VALUES (v_name, movierec_history_account_column(v_name))
        ON CONFLICT (table_name) DO UPDATE SET account_column = EXCLUDED.account_column;
        EXECUTE format('CREATE TRIGGER movierec_history AFTER INSERT OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION movierec_history_record(%L, %s)',
                       p_table, v_name, v_args);
        EXECUTE format('CREATE TRIGGER movierec_history_update AFTER UPDATE ON %s '
                       'FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) '
                       'EXECUTE FUNCTION movierec_history_record(%L, %s)',
                       p_table, v_name, v_args);
        EXECUTE format('CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate(%L)',
                       p_table, v_name);
    END
    $fn$
    """,
    """
    CREATE FUNCTION movierec_history_account_column(p_table text) RETURNS text
    LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN p_table = 'users' THEN 'id' ELSE (
            SELECT min(col) FROM (
                SELECT r.child_column AS col FROM table_references r
                 WHERE r.child_table = p_table AND r.parent_table = 'users'
                UNION ALL
                SELECT a.attname FROM pg_constraint c
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                 WHERE c.contype = 'f' AND c.conrelid = to_regclass(quote_ident(p_table))
                   AND c.confrelid = 'users'::regclass AND cardinality(c.conkey) = 1
            ) AS refs) END
    $$
    """,
    # Delete an account (its rows go by cascade, recorded as usual) and purge every history
    # row of it, then leave a FORGET marker: the right to be forgotten.
    """
    CREATE FUNCTION movierec_forget_account(p_user_id bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
    DECLARE
        v_purged bigint;
    BEGIN
        DELETE FROM users WHERE id = p_user_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no account with id %', p_user_id USING ERRCODE = 'MRH02';
        END IF;
        DELETE FROM change_history WHERE account_id = p_user_id;
        GET DIAGNOSTICS v_purged = ROW_COUNT;
        PERFORM movierec_history_append('users', 'FORGET', jsonb_build_object('id', p_user_id),
                                        NULL, jsonb_build_object('purged', v_purged),
                                        NULL, NULL, NULL);
        RETURN v_purged;
    END
    $fn$
    """,
)

# 0002's rollback functions, replaced by movierec/db/history_rollback.py.
OLD_ROLLBACK_FUNCTIONS = (
    "movierec_history_undo(regclass)",
    "movierec_history_conflicts(regclass)",
    "movierec_history_plan(bigint, timestamptz, bigint, text)",
    "movierec_history_window(bigint, timestamptz, bigint, text)",
    "movierec_history_key_match(jsonb)",
)
NEW_FUNCTIONS = (
    "movierec_forget_account(bigint)",
    "movierec_history_account_column(text)",
    "movierec_history_append(text, text, jsonb, jsonb, jsonb, bigint, text[], bigint)",
    "movierec_history_signature(change_history, bytea)",
    "movierec_history_change_set()",
    "movierec_history_trusted()",
)


def _exec(statement: str, **params) -> None:
    op.execute(sa.text(statement).bindparams(**params) if params else sa.text(statement))


def _earlier(name: str) -> ModuleType:
    """An earlier migration's module (frozen, so its SQL is what that revision ran)."""
    path = next(Path(__file__).parent.glob(f"{name}_*.py"))
    spec = importlib.util.spec_from_file_location(f"movierec_migration_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scrub_and_attribute() -> None:
    """Existing rows: private columns out of the images (their change kept as a name), and
    the account each row belongs to."""
    for table, column, _ in PRIVATE:
        _exec(
            "UPDATE change_history SET "
            "private_changed = CASE WHEN coalesce(old_row -> :c, 'null') "
            "  IS DISTINCT FROM coalesce(new_row -> :c, 'null') "
            "  THEN array_append(coalesce(private_changed, '{}'), CAST(:c AS text)) "
            "  ELSE private_changed END, "
            "old_row = old_row - CAST(:c AS text), new_row = new_row - CAST(:c AS text) "
            "WHERE table_name = :t",
            t=table,
            c=column,
        )
    _exec(
        "UPDATE change_history h SET account_id = CAST(coalesce(h.new_row, h.old_row, h.row_key) "
        "->> t.account_column AS bigint) FROM history_tables t "
        "WHERE t.table_name = h.table_name AND t.account_column IS NOT NULL"
    )


def upgrade() -> None:
    for statement in TABLES:
        _exec(statement)
    _exec(
        "INSERT INTO history_secret (key, signed_from) SELECT gen_random_bytes(32), "
        "coalesce(max(id), 0) + 1 FROM change_history"
    )
    for function in OLD_ROLLBACK_FUNCTIONS:
        _exec(f"DROP FUNCTION {function}")
    for statement in FUNCTIONS:
        _exec(statement)
    _exec(
        "ALTER TABLE change_history ALTER COLUMN change_set "
        "SET DEFAULT movierec_history_change_set()"
    )
    tracked = op.get_bind().execute(
        sa.text(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = 'movierec_history' AND t.tgparentid = 0"
        )
    )
    for (table,) in tracked.all():
        _exec(
            "INSERT INTO history_tables (table_name, account_column) "
            "VALUES (:t, movierec_history_account_column(:t))",
            t=table,
        )
    for table, column, restore in PRIVATE:
        _exec(
            "UPDATE history_tables SET private_columns = private_columns || CAST(:c AS text), "
            "private_restore = private_restore || CAST(:r AS text) WHERE table_name = :t",
            t=table,
            c=column,
            r=restore,
        )
    _scrub_and_attribute()
    for function in ("movierec_history_append", "movierec_history_signature"):
        _exec(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    _exec("REVOKE EXECUTE ON FUNCTION movierec_forget_account(bigint) FROM PUBLIC")
    _exec(f"GRANT EXECUTE ON FUNCTION movierec_forget_account(bigint) TO {WEB}")
    _exec(f"REVOKE INSERT ON change_history FROM {WEB}")


def downgrade() -> None:
    # The scrubbed credentials and purged accounts stay gone; signatures are dropped.
    _exec(f"GRANT INSERT ON change_history TO {WEB}")
    _exec(
        "ALTER TABLE change_history ALTER COLUMN change_set "
        "SET DEFAULT nullif(current_setting('movierec.change_set', true), '')::bigint"
    )
    initial, bulk_skip, actor_claims = _earlier("0002"), _earlier("0008"), _earlier("0009")
    partitions = _earlier("0004")
    _exec(actor_claims.CHECKED)
    _exec(bulk_skip.FUNCTION.format(skip=bulk_skip.OWNERS_SKIP))
    _exec(partitions.FUNCTIONS[0])  # movierec_history_track
    forbid = next(f for f in initial.FUNCTIONS if "movierec_forbid_truncate()" in f)
    _exec(forbid.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    for function in NEW_FUNCTIONS:
        _exec(f"DROP FUNCTION {function}")
    for name in reversed(OLD_ROLLBACK_FUNCTIONS):
        short = name.split("(")[0]
        _exec(next(f for f in initial.FUNCTIONS if f"FUNCTION {short}(" in f))
    _exec("DELETE FROM change_history WHERE op = 'FORGET'")
    _exec("ALTER TABLE change_history DROP CONSTRAINT change_history_op_check")
    _exec(
        "ALTER TABLE change_history ADD CONSTRAINT change_history_op_check "
        f"CHECK (op IN ({', '.join(repr(o) for o in OPS)}))"
    )
    _exec("DROP INDEX change_history_account_idx")
    _exec(
        "ALTER TABLE change_history DROP COLUMN account_id, DROP COLUMN private_changed, "
        "DROP COLUMN signature"
    )
    _exec("DROP TABLE history_tables")
    _exec("DROP TABLE history_secret")
    # pgcrypto stays: something else may use it.
