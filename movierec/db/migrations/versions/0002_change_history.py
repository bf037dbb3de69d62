"""change history: per-row history triggers, change sets, TRUNCATE guard

Revision ID: 0002
Revises: 0001

What the objects are for, and what the history does not see, is documented in
``movierec/db/history.py``; this file only creates them. The SQL is written out here (not
imported) so that the migration stays what it was when it ran, whatever history.py becomes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TRACKED = ("users", "movies", "ratings", "preferences")

FUNCTIONS = (
    # Who made a change: the request's user or the admin, set per transaction by the app and
    # the CLI; a connection that said nothing is blamed on its database role.
    """
    CREATE FUNCTION movierec_actor() RETURNS text LANGUAGE sql STABLE AS $$
        SELECT coalesce(nullif(current_setting('movierec.actor', true), ''), current_user::text)
    $$
    """,
    """
    CREATE FUNCTION movierec_forbid_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
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
            INSERT INTO change_history (table_name, op) VALUES (TG_ARGV[0], 'TRUNCATE');
        END IF;
        RETURN NULL;
    END
    $fn$
    """,
    """
    CREATE FUNCTION movierec_history_record() RETURNS trigger LANGUAGE plpgsql AS $fn$
    -- TG_ARGV[0] is the table's own name (not the partition's, should it be partitioned);
    -- the other arguments are its primary key columns.
    DECLARE
        v_row jsonb;
        v_key jsonb := '{}';
    BEGIN
        -- A bulk load records one change set instead (a row trigger makes it ~15x slower).
        IF current_setting('movierec.bulk_change_set', true) <> '' THEN
            RETURN NULL;
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
    """,
    # Called by this migration and by any later one that creates or rebuilds a tracked table.
    """
    CREATE FUNCTION movierec_history_track(p_table regclass) RETURNS void
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
            RAISE EXCEPTION 'cannot track %: it has no primary key', p_table;
        END IF;
        -- UPDATE has its own trigger so that a no-op update (an upsert that changed nothing)
        -- costs no history row.
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
    CREATE FUNCTION movierec_history_add_partitions(
        p_from timestamptz DEFAULT now(), p_months integer DEFAULT 3
    ) RETURNS integer LANGUAGE plpgsql AS $fn$
    -- Monthly (UTC) partitions of change_history from p_from's month to p_months after it;
    -- returns how many were created. Rows that fell into the DEFAULT partition meanwhile move
    -- to their new partition (PostgreSQL refuses to create it while they sit there).
    DECLARE
        v_first timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
        v_month timestamp;
        v_lo timestamptz;
        v_hi timestamptz;
        v_name text;
        v_created integer := 0;
    BEGIN
        FOR i IN 0 .. p_months LOOP
            v_month := v_first + make_interval(months => i);
            v_name := 'change_history_' || to_char(v_month, 'YYYY_MM');
            CONTINUE WHEN to_regclass(quote_ident(v_name)) IS NOT NULL;
            v_lo := v_month AT TIME ZONE 'UTC';
            v_hi := (v_month + interval '1 month') AT TIME ZONE 'UTC';
            CREATE TEMP TABLE movierec_moving (LIKE change_history) ON COMMIT DROP;
            WITH moved AS (
                DELETE FROM change_history_default
                 WHERE changed_at >= v_lo AND changed_at < v_hi RETURNING *
            )
            INSERT INTO movierec_moving SELECT * FROM moved;
            EXECUTE format('CREATE TABLE %I PARTITION OF change_history '
                           'FOR VALUES FROM (%L) TO (%L)', v_name, v_lo, v_hi);
            EXECUTE format('CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON %I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate()',
                           v_name);
            INSERT INTO change_history OVERRIDING SYSTEM VALUE SELECT * FROM movierec_moving;
            DROP TABLE movierec_moving;
            v_created := v_created + 1;
        END LOOP;
        RETURN v_created;
    END
    $fn$
    """,
    # "t.<col> = k.<col> AND ..." over the columns of a row key, for the dynamic SQL below.
    """
    CREATE FUNCTION movierec_history_key_match(p_key jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
        SELECT string_agg(format('t.%1$I = k.%1$I', c), ' AND ' ORDER BY c)
          FROM jsonb_object_keys(p_key) AS c
    $$
    """,
    # The window of changes a rollback reverts: after a change id or a time, up to a fixed
    # last id (what was checked is what gets reverted), optionally one table; '*' marks
    # (bulk loads, rollbacks) apply to every table. Inlined by the planner.
    """
    CREATE FUNCTION movierec_history_window(
        p_after_id bigint, p_after_time timestamptz, p_through_id bigint, p_table text
    ) RETURNS SETOF change_history LANGUAGE sql STABLE AS $$
        SELECT * FROM change_history
         WHERE (p_after_id IS NULL OR id > p_after_id)
           AND (p_after_time IS NULL OR changed_at > p_after_time)
           AND id <= p_through_id
           AND (p_table IS NULL OR table_name IN (p_table, '*'))
    $$
    """,
    # How deep a table sits under the tables its foreign keys point to (0: none): rows are
    # put back parents first and deleted children first.
    """
    CREATE FUNCTION movierec_history_table_rank(p_table text) RETURNS integer
    LANGUAGE sql STABLE AS $$
        WITH RECURSIVE up(rel, depth) AS (
            SELECT to_regclass(quote_ident(p_table))::oid, 0
            UNION ALL
            SELECT c.confrelid, up.depth + 1
              FROM up JOIN pg_constraint c ON c.conrelid = up.rel AND c.contype = 'f'
             WHERE c.confrelid <> c.conrelid AND up.depth < 32
        )
        SELECT max(depth) FROM up
    $$
    """,
    # One step per row the window touched, from its state now (expected: the new_row of its
    # last change, NULL when that was a DELETE) back to its state before the window (target:
    # the old_row of its first change, NULL when that was an INSERT). Steps are numbered in
    # the order they can run: deletes (children's tables first), updates, inserts (parents'
    # tables first). Replaying changes one by one in reverse would not do: PostgreSQL records
    # a cascaded delete of child rows after the parent's delete. The caller materialises the
    # plan in a temp table (the conflict check and the undo below read it).
    """
    CREATE FUNCTION movierec_history_plan(
        p_after_id bigint, p_after_time timestamptz, p_through_id bigint, p_table text
    ) RETURNS TABLE (ord bigint, step text, table_name text, row_key jsonb, target jsonb,
                     expected jsonb, first_id bigint, last_id bigint)
    LANGUAGE sql STABLE AS $$
        WITH keyed AS (
            SELECT h.table_name, h.row_key,
                   row_number() OVER k AS n,
                   first_value(h.id) OVER k AS first_id,
                   first_value(h.op) OVER k AS first_op,
                   first_value(h.old_row) OVER k AS target,
                   last_value(h.id) OVER k AS last_id,
                   last_value(h.op) OVER k AS last_op,
                   last_value(h.new_row) OVER k AS expected
              FROM movierec_history_window(p_after_id, p_after_time, p_through_id, p_table) h
             WHERE h.op IN ('INSERT', 'UPDATE', 'DELETE')
            WINDOW k AS (PARTITION BY h.table_name, h.row_key ORDER BY h.id
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ), ranks AS MATERIALIZED (  -- materialised: one rank lookup per table, not per row
            SELECT t.name, movierec_history_table_rank(t.name) AS rank
              FROM (SELECT DISTINCT k.table_name AS name FROM keyed k) t
        ), steps AS (
            SELECT k.*, r.rank,
                   CASE WHEN k.first_op = 'INSERT' AND k.last_op <> 'DELETE' THEN 'DELETE'
                        WHEN k.first_op <> 'INSERT' AND k.last_op = 'DELETE' THEN 'INSERT'
                        WHEN k.first_op <> 'INSERT' THEN 'UPDATE'
                        ELSE 'NONE' END AS step
              FROM keyed k JOIN ranks r ON r.name = k.table_name
             WHERE k.n = 1
        )
        SELECT row_number() OVER (
                   ORDER BY CASE s.step WHEN 'DELETE' THEN 1 WHEN 'UPDATE' THEN 2
                                        WHEN 'INSERT' THEN 3 ELSE 4 END,
                            CASE WHEN s.step = 'DELETE' THEN -s.rank ELSE s.rank END,
                            CASE WHEN s.step = 'INSERT' THEN s.last_id ELSE -s.first_id END),
               s.step, s.table_name, s.row_key, s.target, s.expected, s.first_id, s.last_id
          FROM steps s
    $$
    """,
    # Rows of a plan that are not as the last change in the window left them (changed
    # outside the history): one set-based query per table comparing the row's to_jsonb image
    # with the recorded one, both read through the row type (so the time zone the image was
    # written in does not matter).
    """
    CREATE FUNCTION movierec_history_conflicts(p_plan regclass)
    RETURNS TABLE (conflict_table text, conflict_key jsonb, conflict_change bigint)
    LANGUAGE plpgsql STABLE AS $fn$
    DECLARE
        v record;
    BEGIN
        FOR v IN EXECUTE format('SELECT DISTINCT ON (p.table_name) p.table_name, p.row_key '
                                'FROM %s p ORDER BY p.table_name', p_plan)
        LOOP
            RETURN QUERY EXECUTE format(
                'SELECT p.table_name, p.row_key, p.last_id FROM %3$s p '
                'LEFT JOIN LATERAL (SELECT to_jsonb(t) AS image FROM %1$I t, '
                '    jsonb_populate_record(NULL::%1$I, p.row_key) k WHERE %2$s) cur ON true '
                'WHERE p.table_name = $1 AND cur.image IS DISTINCT FROM '
                '    CASE WHEN p.expected IS NOT NULL '
                '    THEN to_jsonb(jsonb_populate_record(NULL::%1$I, p.expected)) END',
                v.table_name, movierec_history_key_match(v.row_key), p_plan)
            USING v.table_name;
        END LOOP;
    END
    $fn$
    """,
    # Run a plan: one set-based statement per step and table, in plan order; returns the
    # number of rows restored. Each statement must touch exactly the rows planned. One
    # exception block (one subtransaction) turns any failure into SQLSTATE MRH01 naming the
    # table and, for a constraint, the key.
    """
    CREATE FUNCTION movierec_history_undo(p_plan regclass) RETURNS bigint
    LANGUAGE plpgsql AS $fn$
    DECLARE
        s record;
        v_cols text;
        v_values text;
        v_sets text;
        v_match text;
        v_count bigint;
        v_done bigint := 0;
        v_what text;
        v_detail text;
    BEGIN
        FOR s IN EXECUTE format(
                'SELECT p.step, p.table_name, count(*) AS n, min(p.ord) AS first_ord, '
                '       (array_agg(p.row_key))[1] AS sample_key '
                'FROM %s p WHERE p.step <> ''NONE'' '
                'GROUP BY p.step, p.table_name ORDER BY first_ord', p_plan)
        LOOP
            v_what := format('%s (%s of %s rows)', s.table_name, lower(s.step), s.n);
            v_match := movierec_history_key_match(s.sample_key);
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
                   string_agg('o.' || quote_ident(attname), ', ' ORDER BY attnum),
                   string_agg(format('%1$I = o.%1$I', attname), ', ' ORDER BY attnum)
                       FILTER (WHERE NOT s.sample_key ? attname)
              INTO v_cols, v_values, v_sets
              FROM pg_attribute
             WHERE attrelid = to_regclass(quote_ident(s.table_name)) AND attnum > 0
               AND NOT attisdropped AND attgenerated = '';
            IF s.step = 'DELETE' THEN
                EXECUTE format(
                    'DELETE FROM %1$I t USING %3$s p '
                    'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$I, p.row_key) k '
                    'WHERE p.table_name = $1 AND p.step = ''DELETE'' AND %2$s',
                    s.table_name, v_match, p_plan)
                USING s.table_name;
            ELSIF s.step = 'INSERT' THEN
                EXECUTE format(
                    'INSERT INTO %1$I (%2$s) OVERRIDING SYSTEM VALUE SELECT %3$s FROM %4$s p '
                    'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$I, p.target) o '
                    'WHERE p.table_name = $1 AND p.step = ''INSERT'' ORDER BY p.ord',
                    s.table_name, v_cols, v_values, p_plan)
                USING s.table_name;
            ELSIF v_sets IS NOT NULL THEN
                EXECUTE format(
                    'UPDATE %1$I t SET %2$s FROM %4$s p '
                    'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$I, p.target) o '
                    'CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$I, p.row_key) k '
                    'WHERE p.table_name = $1 AND p.step = ''UPDATE'' AND %3$s',
                    s.table_name, v_sets, v_match, p_plan)
                USING s.table_name;
            ELSE
                CONTINUE;  -- a table of key columns only: nothing to set back
            END IF;
            GET DIAGNOSTICS v_count = ROW_COUNT;
            IF v_count <> s.n THEN
                RAISE EXCEPTION 'only % of the rows were there', v_count;
            END IF;
            v_done := v_done + v_count;
        END LOOP;
        RETURN v_done;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION 'cannot restore %: %', v_what, SQLERRM
            || CASE WHEN coalesce(v_detail, '') <> '' THEN ' (' || v_detail || ')' ELSE '' END
            USING ERRCODE = 'MRH01';
    END
    $fn$
    """,
)

TABLES = (
    """
    CREATE TABLE change_sets (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('rollback', 'bulk')),
        description text NOT NULL,
        actor text NOT NULL DEFAULT movierec_actor(),
        created_at timestamptz NOT NULL DEFAULT now(),
        details jsonb NOT NULL DEFAULT '{}'
    )
    """,
    # changed_at is the transaction's start (now()): a transaction is never split by a time
    # cut-off. id orders changes of the same row as they committed (row locks serialise them).
    """
    CREATE TABLE change_history (
        id bigint GENERATED ALWAYS AS IDENTITY,
        table_name text NOT NULL,
        op text NOT NULL
            CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'ROLLBACK', 'BULK', 'TRUNCATE')),
        row_key jsonb NOT NULL DEFAULT '{}',
        old_row jsonb,
        new_row jsonb,
        txid bigint NOT NULL DEFAULT txid_current(),
        changed_at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL DEFAULT movierec_actor(),
        change_set bigint REFERENCES change_sets (id)
            DEFAULT nullif(current_setting('movierec.change_set', true), '')::bigint,
        PRIMARY KEY (id, changed_at)
    ) PARTITION BY RANGE (changed_at)
    """,
    "CREATE TABLE change_history_default PARTITION OF change_history DEFAULT",
    "CREATE INDEX change_history_changed_at_idx ON change_history (changed_at)",
    """
    CREATE INDEX change_history_change_set_idx ON change_history (change_set)
     WHERE change_set IS NOT NULL
    """,
)


def upgrade() -> None:
    op.execute(sa.text(FUNCTIONS[0]))
    for statement in TABLES:
        op.execute(sa.text(statement))
    for statement in FUNCTIONS[1:]:
        op.execute(sa.text(statement))
    op.execute(sa.text("SELECT movierec_history_add_partitions(now(), 3)"))
    # The history itself is guarded too (partitions get it from add_partitions).
    for statement in (
        "CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON change_history "
        "FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate()",
        "CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON change_history_default "
        "FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate()",
        "CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON change_sets "
        "FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate()",
    ):
        op.execute(sa.text(statement))
    track = sa.text("SELECT movierec_history_track(CAST(:name AS regclass))")
    for name in TRACKED:
        op.execute(track.bindparams(name=name))


def downgrade() -> None:
    # Functions first (some return the tables' row types), movierec_actor last (the tables'
    # defaults call it); CASCADE takes the triggers on the tracked tables with their function.
    for signature in (
        "movierec_history_undo(regclass)",
        "movierec_history_conflicts(regclass)",
        "movierec_history_plan(bigint, timestamptz, bigint, text)",
        "movierec_history_table_rank(text)",
        "movierec_history_window(bigint, timestamptz, bigint, text)",
        "movierec_history_key_match(jsonb)",
        "movierec_history_add_partitions(timestamptz, integer)",
        "movierec_history_track(regclass)",
        "movierec_history_record() CASCADE",
        "movierec_forbid_truncate() CASCADE",
    ):
        op.execute(sa.text("DROP FUNCTION " + signature))
    op.execute(sa.text("DROP TABLE change_history"))
    op.execute(sa.text("DROP TABLE change_sets"))
    op.execute(sa.text("DROP FUNCTION movierec_actor()"))
