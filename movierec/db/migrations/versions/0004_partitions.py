"""partitions: movies by hash (id); ratings, searches, preferences by hash (user_id)

Revision ID: 0004
Revises: 0003

Each of the four tables becomes a partitioned parent with PARTITIONS hash partitions, rows
copied over. What PostgreSQL imposes, and what this migration does about it:

* A partitioned table can have a unique index only if it includes the partition key, and none
  at all once one of its partitions is a FOREIGN table (postgres_fdw, another server). So the
  parents have no primary key: every partition (and every shard table) carries the key
  recorded in ``partitioned_tables``; a key includes the partition column, so uniqueness per
  partition is uniqueness over the table. ``INSERT ... ON CONFLICT`` needs a unique index on
  the parent, so writers update-then-insert (``movierec.db.partitions.upsert``).
* ``movies`` UNIQUE (source, source_id) cannot stay on a table partitioned by id: the
  data-set reference is indexed by ``movie_sources (source, source_id) -> movie_id``, kept
  by a trigger on movies (a duplicate raises a unique violation there, as before).
* Foreign keys cannot be declared on a table with foreign partitions, nor point at a table
  without a unique index. The references (``table_references``) are enforced by triggers
  on the parents, which PostgreSQL clones to every partition, local or foreign: a BEFORE
  INSERT/UPDATE check that the parent row exists (and locks it FOR KEY SHARE, as a foreign
  key does) and an AFTER DELETE cascade on the parent. Same behaviour wherever a
  partition lives; ``movierec db partitions check`` finds orphans made behind the
  triggers' back (``session_replication_role = replica``, edits on a shard server).
* History triggers are re-created on the new tables (``movierec_history_track``, taught to
  read the key from ``partitioned_tables``), and the TRUNCATE guard on each local partition.

Downgrading copies every row back into plain tables with foreign keys (partitions on shard
servers must be reachable; their tables there are left alone) and keeps postgres_fdw.

The SQL is written out here, not imported, so the migration stays what it was when it ran.
"""

import sqlalchemy as sa
from alembic import op
from psycopg import sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PARTITIONS = 4

# table: (partition column, key every partition carries, history-tracked)
TABLES = {
    "movies": ("id", ("id",), True),
    "ratings": ("user_id", ("user_id", "movie_id"), True),
    "searches": ("user_id", ("user_id", "id"), False),
    "preferences": ("user_id", ("user_id",), True),
}

# Indexes of the parents (PostgreSQL builds them on each local partition).
INDEXES = {
    "movies": (
        "CREATE INDEX movies_title_tsv_idx ON movies USING gin (title_tsv)",
        "CREATE INDEX movies_title_trgm_idx ON movies USING gin (title gin_trgm_ops)",
        "CREATE INDEX movies_genres_idx ON movies USING gin (genres)",
        "CREATE INDEX movies_year_idx ON movies (year)",
    ),
    "ratings": ("CREATE INDEX ratings_movie_id_idx ON ratings (movie_id)",),
    "searches": ("CREATE INDEX searches_user_time_idx ON searches (user_id, searched_at)",),
    "preferences": (),
}

# (child table, column, parent table, parent column): what the foreign keys were.
REFERENCES = (
    ("ratings", "user_id", "users", "id"),
    ("ratings", "movie_id", "movies", "id"),
    ("searches", "user_id", "users", "id"),
    ("preferences", "user_id", "users", "id"),
)

REGISTRY = (
    # The key every partition and shard table of a partitioned table carries (its first
    # column is the partition column); the parents themselves cannot have one.
    """
    CREATE TABLE partitioned_tables (
        table_name text PRIMARY KEY,
        key_columns text[] NOT NULL CHECK (cardinality(key_columns) > 0)
    )
    """,
    # References between tables that foreign keys cannot express any more; enforced by
    # triggers (movierec_reference_add) and checked for orphans by the admin tools.
    """
    CREATE TABLE table_references (
        child_table text NOT NULL,
        child_column text NOT NULL,
        parent_table text NOT NULL,
        parent_column text NOT NULL,
        PRIMARY KEY (child_table, child_column)
    )
    """,
    # Where a data-set movie went: the unique (source, source_id) index movies cannot have.
    """
    CREATE TABLE movie_sources (
        source varchar(32) NOT NULL,
        source_id bigint NOT NULL,
        movie_id bigint NOT NULL,
        PRIMARY KEY (source, source_id)
    )
    """,
    "CREATE INDEX movie_sources_movie_id_idx ON movie_sources (movie_id)",
)

FUNCTIONS = (
    # As in 0002, plus: a partitioned table without a primary key of its own is keyed by
    # what partitioned_tables records for it.
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
    # As in 0002, but references enforced by triggers (table_references) count as much as
    # foreign keys: rows are put back parents first and deleted children first.
    """
    CREATE OR REPLACE FUNCTION movierec_history_table_rank(p_table text) RETURNS integer
    LANGUAGE sql STABLE AS $$
        WITH RECURSIVE edges(child, parent) AS (
            SELECT c.conrelid, c.confrelid FROM pg_constraint c
             WHERE c.contype = 'f' AND c.confrelid <> c.conrelid
            UNION
            SELECT to_regclass(quote_ident(r.child_table))::oid,
                   to_regclass(quote_ident(r.parent_table))::oid
              FROM table_references r WHERE r.child_table <> r.parent_table
        ), up(rel, depth) AS (
            SELECT to_regclass(quote_ident(p_table))::oid, 0
            UNION ALL
            SELECT e.parent, up.depth + 1 FROM up JOIN edges e ON e.child = up.rel
             WHERE up.depth < 32
        )
        SELECT max(depth) FROM up
    $$
    """,
    # Record a reference and create its two trigger functions with static SQL (plans are
    # cached per session): movierec_ref_<child>_<column> checks, before a row of the child
    # is written, that the parent row exists, and locks it FOR KEY SHARE as a foreign key
    # does (so a concurrent delete of the parent waits, then cascades to the new row);
    # movierec_cascade_<child>_<column> deletes the child rows after the parent row goes.
    # Both are ordinary (ENABLE ORIGIN) triggers: session_replication_role = replica skips
    # them like it skips foreign key triggers.
    """
    CREATE FUNCTION movierec_reference_add(
        p_child text, p_column text, p_parent text, p_parent_column text
    ) RETURNS void LANGUAGE plpgsql AS $fn$
    DECLARE
        v_check text := format('movierec_ref_%s_%s', p_child, p_column);
        v_cascade text := format('movierec_cascade_%s_%s', p_child, p_column);
        v_message text := format('insert or update on table %I violates reference %s.%s -> %s.%s',
                                 p_child, p_child, p_column, p_parent, p_parent_column);
        v_detail text := format('Key (%s)=(%%s) is not present in table %I.', p_column, p_parent);
    BEGIN
        INSERT INTO table_references VALUES (p_child, p_column, p_parent, p_parent_column);
        EXECUTE format(
            'CREATE FUNCTION %1$I() RETURNS trigger LANGUAGE plpgsql AS $body$ '
            'BEGIN '
            '  IF NEW.%2$I IS NULL OR (TG_OP = ''UPDATE'' AND NEW.%2$I = OLD.%2$I) THEN '
            '    RETURN NEW; '
            '  END IF; '
            '  PERFORM 1 FROM %3$I WHERE %4$I = NEW.%2$I FOR KEY SHARE; '
            '  IF NOT FOUND THEN '
            '    RAISE foreign_key_violation USING MESSAGE = %5$L, '
            '      DETAIL = format(%6$L, NEW.%2$I), TABLE = %7$L, COLUMN = %2$L; '
            '  END IF; '
            '  RETURN NEW; '
            'END $body$',
            v_check, p_column, p_parent, p_parent_column, v_message, v_detail, p_child);
        EXECUTE format(
            'CREATE FUNCTION %1$I() RETURNS trigger LANGUAGE plpgsql AS $body$ '
            'BEGIN DELETE FROM %2$I WHERE %3$I = OLD.%4$I; RETURN NULL; END $body$',
            v_cascade, p_child, p_column, p_parent_column);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION %I()',
                       'movierec_ref_' || p_column, p_column, p_child, v_check);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I FOR EACH ROW EXECUTE FUNCTION %I()',
                       v_cascade, p_parent, v_cascade);
    END
    $fn$
    """,
    # movie_sources follows the movies' (source, source_id).
    """
    CREATE FUNCTION movierec_movie_sources_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.source IS NOT NULL AND OLD.source_id IS NOT NULL THEN
            DELETE FROM movie_sources
             WHERE source = OLD.source AND source_id = OLD.source_id AND movie_id = OLD.id;
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.source IS NOT NULL AND NEW.source_id IS NOT NULL THEN
            INSERT INTO movie_sources (source, source_id, movie_id)
            VALUES (NEW.source, NEW.source_id, NEW.id);
        END IF;
        RETURN NULL;
    END
    $fn$
    """,
)


def _exec(statement: str, **params) -> None:
    op.execute(sa.text(statement).bindparams(**params) if params else sa.text(statement))


def _copy_rows(source: str, target: str) -> None:
    """INSERT every row of ``source`` into ``target`` (their writable columns, by name)."""
    bind = op.get_bind()
    names = bind.scalars(
        sa.text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
            "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
        ),
        {"t": target},
    ).all()
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        sql.Identifier(target), columns, columns, sql.Identifier(source)
    )
    bind.exec_driver_sql(statement.as_string(bind.connection.driver_connection))


def _name_partition_indexes(table: str) -> None:
    """Rename each partition's copy of a parent index to <parent index>_p<remainder>."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT ci.relname, pi.relname, ct.relname FROM pg_inherits h "
                "JOIN pg_class ci ON ci.oid = h.inhrelid JOIN pg_class pi ON pi.oid = h.inhparent "
                "JOIN pg_index x ON x.indexrelid = ci.oid JOIN pg_class ct ON ct.oid = x.indrelid "
                "JOIN pg_index px ON px.indexrelid = pi.oid "
                "WHERE px.indrelid = CAST(:t AS regclass)"
            ),
            {"t": table},
        )
        .all()
    )
    for child_index, parent_index, partition in rows:
        wanted = parent_index + partition[len(table) :]
        if child_index != wanted:
            _exec(f'ALTER INDEX "{child_index}" RENAME TO "{wanted}"')


def _partition(table: str) -> None:
    """Rebuild ``table`` as a hash-partitioned table with the same columns and rows."""
    column, key, tracked = TABLES[table]
    old = f"{table}_unpartitioned"
    _exec(f"ALTER TABLE {table} RENAME TO {old}")
    for statement in INDEXES[table]:  # free the index names for the new parent
        _exec(f"DROP INDEX IF EXISTS {statement.split()[2]}")
    sequence = None
    if "id" in key:
        sequence = op.get_bind().scalar(
            sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": old}
        )
    if sequence:  # keep it (and its position) when the old table goes
        _exec(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    _exec(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING GENERATED "
        f"INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION) "
        f"PARTITION BY HASH ({column})"
    )
    if sequence:
        _exec(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    _exec(
        "INSERT INTO partitioned_tables VALUES (:t, CAST(:k AS text[]))",
        t=table,
        k="{" + ",".join(key) + "}",
    )
    for remainder in range(PARTITIONS):
        name = f"{table}_p{remainder}"
        _exec(
            f"CREATE TABLE {name} PARTITION OF {table} "
            f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {remainder})"
        )
        _exec(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({', '.join(key)})")
        if tracked:
            _exec(
                f"CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON {name} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate('{table}')"
            )
    _copy_rows(old, table)
    for statement in INDEXES[table]:
        _exec(statement)
    _name_partition_indexes(table)
    if tracked:
        _exec("SELECT movierec_history_track(CAST(:t AS regclass))", t=table)


def upgrade() -> None:
    # Partitions on other servers (movierec db partitions add-server / place).
    _exec("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    for statement in REGISTRY + FUNCTIONS:
        _exec(statement)
    for table in TABLES:
        _partition(table)
    _exec(
        "INSERT INTO movie_sources (source, source_id, movie_id) "
        "SELECT source, source_id, id FROM movies "
        "WHERE source IS NOT NULL AND source_id IS NOT NULL"
    )
    _exec(
        "CREATE TRIGGER movierec_movie_sources AFTER INSERT OR DELETE OR UPDATE OF "
        "source, source_id ON movies FOR EACH ROW EXECUTE FUNCTION movierec_movie_sources_sync()"
    )
    for child, column, parent, parent_column in REFERENCES:
        _exec(
            "SELECT movierec_reference_add(:c, :col, :p, :pcol)",
            c=child,
            col=column,
            p=parent,
            pcol=parent_column,
        )
    # The children first: their old foreign keys point at the old movies.
    for table in ("ratings", "searches", "preferences", "movies"):
        _exec(f"DROP TABLE {table}_unpartitioned")


# -- downgrade: plain tables with foreign keys again (every partition must be readable) ------

PLAIN = {
    "movies": (
        """
        CREATE TABLE movies (
            id bigint NOT NULL DEFAULT nextval('movies_id_seq'),
            title text NOT NULL,
            year smallint,
            genres text[] NOT NULL DEFAULT '{}',
            imdb_id varchar(16),
            tmdb_id integer,
            source varchar(32),
            source_id bigint,
            title_tsv tsvector NOT NULL GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED,
            CONSTRAINT movies_pkey PRIMARY KEY (id),
            CONSTRAINT movies_source_key UNIQUE (source, source_id)
        )
        """,
        "movies_id_seq",
    ),
    "preferences": (
        """
        CREATE TABLE preferences (
            user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            genres text[] NOT NULL DEFAULT '{}',
            movie_ids bigint[] NOT NULL DEFAULT '{}',
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT preferences_pkey PRIMARY KEY (user_id)
        )
        """,
        None,
    ),
    "ratings": (
        """
        CREATE TABLE ratings (
            user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            movie_id bigint NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
            rating numeric(2, 1) NOT NULL,
            rated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ratings_rating_half_stars
                CHECK (rating >= 0.5 AND rating <= 5 AND rating * 2 = trunc(rating * 2)),
            CONSTRAINT ratings_pkey PRIMARY KEY (user_id, movie_id)
        )
        """,
        None,
    ),
    "searches": (
        """
        CREATE TABLE searches (
            id bigint NOT NULL DEFAULT nextval('searches_id_seq'),
            user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            query text NOT NULL DEFAULT '',
            genre text,
            year smallint,
            searched_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT searches_pkey PRIMARY KEY (id)
        )
        """,
        "searches_id_seq",
    ),
}

ORIGINAL_FUNCTIONS = (
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
            RAISE EXCEPTION 'cannot track %: it has no primary key', p_table;
        END IF;
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
    CREATE OR REPLACE FUNCTION movierec_history_table_rank(p_table text) RETURNS integer
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
)


def downgrade() -> None:
    order = ("movies", "preferences", "ratings", "searches")  # parents first
    for table in order:
        _exec(f"ALTER TABLE {table} RENAME TO {table}_partitioned")
        sequence = PLAIN[table][1]
        if sequence:
            _exec(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
        for statement in INDEXES[table]:
            _exec(f"DROP INDEX IF EXISTS {statement.split()[2]}")
    _exec("DROP TRIGGER movierec_movie_sources ON movies_partitioned")
    for table in order:
        statement, sequence = PLAIN[table]
        _exec(statement)
        if sequence:
            _exec(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
        # Replica mode: no reference triggers or history for rows that only change place.
        _exec("SET LOCAL session_replication_role = replica")
        _copy_rows(f"{table}_partitioned", table)
        _exec("SET LOCAL session_replication_role = origin")
        for index in INDEXES[table]:
            _exec(index)
    for table in ("searches", "ratings", "preferences", "movies"):
        _exec(f"DROP TABLE {table}_partitioned")
    for child, column, parent, _ in REFERENCES:
        _exec(f"DROP TRIGGER IF EXISTS movierec_cascade_{child}_{column} ON {parent}")
        _exec(f"DROP FUNCTION movierec_cascade_{child}_{column}()")
        _exec(f"DROP FUNCTION movierec_ref_{child}_{column}()")
    for statement in ORIGINAL_FUNCTIONS:
        _exec(statement)
    for table, (_, _, tracked) in TABLES.items():
        if tracked:
            _exec("SELECT movierec_history_track(CAST(:t AS regclass))", t=table)
    _exec("DROP FUNCTION movierec_reference_add(text, text, text, text)")
    _exec("DROP FUNCTION movierec_movie_sources_sync()")
    _exec("DROP TABLE movie_sources")
    _exec("DROP TABLE table_references")
    _exec("DROP TABLE partitioned_tables")
    # postgres_fdw stays: servers an admin added depend on it.
