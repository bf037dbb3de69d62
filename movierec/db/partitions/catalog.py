"""What is partitioned, where each partition lives, and the DDL to build one somewhere else.

Migration 0004 hash-partitions ``movies`` by ``id`` and ``ratings``, ``searches`` and
``preferences`` by ``user_id`` (4 partitions each, named ``<table>_p<remainder>``), and
records each table's key in ``partitioned_tables``. A partition lives either

* on the primary, in the database's default tablespace or in another TABLESPACE (a directory
  standing for another disk), as an ordinary table carrying the key as its primary key; or
* on another PostgreSQL server (a *shard*), as a postgres_fdw FOREIGN TABLE whose rows are
  in a table of the same name on that server, which carries the key there.

Queries through the parent that name one user (or one movie id) touch only that user's
partition: PostgreSQL prunes the others at plan or run time.

The admin operations here connect with the primary's URL (``settings.database_url``) as a
role that may create servers, tablespaces and tables (a superuser, typically).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg import sql

from movierec.config import Settings
from movierec.db.connect import connect
from movierec.db.engines import libpq_conninfo
from movierec.errors import BadInput, MovierecError, NotFound

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
DEFAULT_TABLESPACE = "pg_default"
_BOUND = re.compile(r"FOR VALUES WITH \(modulus (\d+), remainder (\d+)\)")
_INDEX_DEF = re.compile(r"^CREATE INDEX \S+ ON (?:ONLY )?\S+ (USING .+)$")


class PartitionError(MovierecError):
    """A partition operation failed or was refused; the message says whether anything
    changed (normally nothing did)."""


class Placement(StrEnum):
    LOCAL = "local"  # on the primary, default tablespace
    TABLESPACE = "tablespace"  # on the primary, in another tablespace
    SERVER = "server"  # a postgres_fdw foreign table; rows on a shard server


@dataclass(frozen=True)
class Partition:
    """One partition of a partitioned table and where it lives.

    ``where`` is the tablespace (``pg_default`` for LOCAL) or the server name. ``rows`` is
    exact when ``exact``, else the planner's estimate (``None``: unknown, e.g. never
    analysed or the server did not answer, then ``error`` says why).
    """

    table: str
    name: str
    modulus: int
    remainder: int
    placement: Placement
    where: str
    remote_table: str | None = None
    rows: int | None = None
    exact: bool = False
    bytes: int | None = None
    error: str | None = None

    @property
    def location(self) -> str:
        """Where it lives, for people: ``local``, ``tablespace fast``, ``server shard1``."""
        if self.placement is Placement.LOCAL:
            return "local"
        return f"{self.placement} {self.where}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(), e.g. numeric(2,1)
    not_null: bool
    generated: str | None  # the expression of a STORED generated column
    default: str | None  # the default expression of another column


@dataclass(frozen=True)
class TableShape:
    """What a new partition of ``table`` must look like (read from the parent)."""

    table: str
    partition_column: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    checks: tuple[tuple[str, str], ...]  # (name, pg_get_constraintdef)
    indexes: tuple[tuple[str, str], ...]  # (parent index name, "USING ... (...)")
    extensions: tuple[str, ...]  # the extensions the indexes' operator classes come from
    truncate_guard: bool  # the table's partitions get the history's TRUNCATE guard

    @property
    def writable(self) -> tuple[str, ...]:
        """Columns an INSERT may name (not generated)."""
        return tuple(c.name for c in self.columns if c.generated is None)


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it can name a server or tablespace; raises :class:`BadInput`."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise BadInput(
            f"bad {what} name {name!r}: use 1-40 lowercase letters, digits or _, "
            "starting with a letter"
        )
    return name


def partition_name(table: str, remainder: int) -> str:
    return f"{table}_p{remainder}"


# -- connecting -----------------------------------------------------------------------------


def primary_conninfo(settings: Settings) -> str:
    """A libpq connection string for ``settings.database_url``. Raises ConfigError."""
    settings.require("database_url")
    return libpq_conninfo(settings.database_url, "movierec-partitions")


@contextmanager
def primary(settings: Settings, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection to the primary without a statement timeout (moves take long).

    Raises :class:`DatabaseUnavailable` when it cannot be reached or goes away, and
    :class:`PartitionError` for a failed statement (its transaction is rolled back).
    """
    with connect(
        primary_conninfo(settings),
        "the primary",
        autocommit=autocommit,
        failed=lambda reason: PartitionError(f"{reason}; nothing was changed"),
    ) as conn:
        conn.execute("SET statement_timeout = 0")
        yield conn


# -- reading the catalog --------------------------------------------------------------------

_PARTITIONS = """
SELECT p.table_name, c.relname, pg_get_expr(c.relpartbound, c.oid), c.relkind,
       coalesce(ts.spcname, %(default)s), fs.srvname, ft.ftoptions,
       c.reltuples::bigint, CASE WHEN c.relkind = 'r' THEN pg_total_relation_size(c.oid) END
FROM partitioned_tables p
JOIN pg_inherits i ON i.inhparent = to_regclass(quote_ident(p.table_name))
JOIN pg_class c ON c.oid = i.inhrelid
LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
LEFT JOIN pg_foreign_server fs ON fs.oid = ft.ftserver
WHERE %(table)s::text IS NULL OR p.table_name = %(table)s
ORDER BY p.table_name, c.relname
"""


def partitioned_tables(conn: psycopg.Connection) -> dict[str, tuple[str, ...]]:
    """``{table: key columns}`` of every partitioned table, in name order."""
    rows = conn.execute(
        "SELECT table_name, key_columns FROM partitioned_tables ORDER BY table_name"
    ).fetchall()
    return {name: tuple(key) for name, key in rows}


def read_partitions(conn: psycopg.Connection, table: str | None = None) -> list[Partition]:
    """The partitions (of ``table``, or of every partitioned table) with the primary's own
    figures: estimated rows and bytes of local partitions; nothing yet for foreign ones."""
    if table is not None and table not in partitioned_tables(conn):
        raise NotFound(f"{table!r} is not a partitioned table ({_known(conn)})")
    params = {"default": DEFAULT_TABLESPACE, "table": table}
    result = []
    for parent, name, bound, kind, space, server, options, tuples, size in conn.execute(
        _PARTITIONS, params
    ):
        modulus, remainder = _bound(bound)
        if kind == "f":
            opts = _options(options)
            remote = f"{opts.get('schema_name', 'public')}.{opts.get('table_name', name)}"
            placement, where = Placement.SERVER, server
        else:
            remote = None
            placement = Placement.LOCAL if space == DEFAULT_TABLESPACE else Placement.TABLESPACE
            where = space
        rows = tuples if kind != "f" and tuples >= 0 else None
        result.append(
            Partition(parent, name, modulus, remainder, placement, where, remote, rows,
                      bytes=size)
        )  # fmt: skip
    return result


def find_partition(conn: psycopg.Connection, name: str) -> Partition:
    """The partition called ``name``; raises :class:`NotFound` listing the known ones."""
    partitions = read_partitions(conn)
    for partition in partitions:
        if partition.name == name:
            return partition
    known = ", ".join(p.name for p in partitions)
    raise NotFound(f"no partition named {name!r} (partitions: {known})")


def _known(conn: psycopg.Connection) -> str:
    return "partitioned tables: " + ", ".join(partitioned_tables(conn))


def _bound(bound: str) -> tuple[int, int]:
    found = _BOUND.fullmatch(bound or "")
    if found is None:
        raise PartitionError(f"unexpected partition bound {bound!r}: not a hash partition")
    return int(found.group(1)), int(found.group(2))


def _options(options: Sequence[str] | None) -> dict[str, str]:
    return dict(option.split("=", 1) for option in options or ())


def table_shape(conn: psycopg.Connection, table: str) -> TableShape:
    """How a partition of ``table`` is built: columns, checks, key, the parent's indexes."""
    key = partitioned_tables(conn).get(table)
    if key is None:
        raise NotFound(f"{table!r} is not a partitioned table ({_known(conn)})")
    oid = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()[0]
    column = conn.execute(
        "SELECT a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "WHERE p.partrelid = %s",
        (oid,),
    ).fetchone()[0]
    columns = tuple(
        Column(name, type_, not_null, expr if generated else None, None if generated else expr)
        for name, type_, not_null, generated, expr in conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.attgenerated <> '', pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,),
        )
    )
    checks = tuple(
        conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s AND contype = 'c' ORDER BY conname",
            (oid,),
        ).fetchall()
    )
    indexes = []
    for name, definition in conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s ORDER BY c.relname",
        (oid,),
    ):
        found = _INDEX_DEF.match(definition)
        if found is None:  # a unique index cannot be on a parent with foreign partitions
            raise PartitionError(f"cannot copy index {name} of {table}: {definition}")
        indexes.append((name, found.group(1)))
    extensions = tuple(
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT e.extname FROM pg_index i "
            "CROSS JOIN LATERAL unnest(i.indclass::oid[]) AS oc(oid) "
            "JOIN pg_depend d ON d.classid = 'pg_opclass'::regclass AND d.objid = oc.oid "
            "AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid "
            "WHERE i.indrelid = %s ORDER BY 1",
            (oid,),
        )
    )
    guard = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s "
        "AND tgname = 'movierec_no_truncate')",
        (oid,),
    ).fetchone()[0]
    return TableShape(table, column, key, columns, checks, tuple(indexes), extensions, guard)


# -- DDL ------------------------------------------------------------------------------------


def _column_defs(shape: TableShape, defaults: bool) -> list[sql.Composable]:
    defs: list[sql.Composable] = []
    for column in shape.columns:
        parts = [sql.Identifier(column.name), sql.SQL(column.type)]
        if defaults and column.default:
            parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(column.default)))
        if column.not_null:
            parts.append(sql.SQL("NOT NULL"))
        if column.generated:
            parts.append(
                sql.SQL("GENERATED ALWAYS AS ({}) STORED").format(sql.SQL(column.generated))
            )
        defs.append(sql.SQL(" ").join(parts))
    for name, definition in shape.checks:
        defs.append(sql.SQL("CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition)))
    return defs


def foreign_table_ddl(
    shape: TableShape, name: str, server: str, remote_table: str, schema: str = "public"
) -> sql.Composed:
    """CREATE FOREIGN TABLE ``name`` with the parent's columns and defaults (evaluated here:
    postgres_fdw sends every column; generated ones are computed here and by the shard
    alike) and CHECK constraints (ATTACH requires them; the shard enforces them, the
    foreign table only declares them)."""
    return sql.SQL(
        "CREATE FOREIGN TABLE {} ({}) SERVER {} OPTIONS (schema_name {}, table_name {})"
    ).format(
        sql.Identifier(name),
        sql.SQL(", ").join(_column_defs(shape, defaults=True)),
        sql.Identifier(server),
        sql.Literal(schema),
        sql.Literal(remote_table),
    )


def remote_table_ddl(shape: TableShape, remote_table: str, remainder: int) -> list[sql.Composed]:
    """The shard's table for one partition: columns, checks, the key as primary key, and the
    parent's indexes (the shard answers the queries pushed down to it)."""
    body = [
        *_column_defs(shape, defaults=False),  # rows arrive with every value filled in
        sql.SQL("PRIMARY KEY ({})").format(_names(shape.key)),
    ]
    statements = [
        sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(remote_table), sql.SQL(", ").join(body)
        )
    ]
    for index, tail in shape.indexes:
        statements.append(
            sql.SQL("CREATE INDEX {} ON {} {}").format(
                sql.Identifier(f"{index}_p{remainder}"), sql.Identifier(remote_table), sql.SQL(tail)
            )
        )
    return statements


def local_table_ddl(shape: TableShape, name: str) -> list[sql.Composed]:
    """An ordinary table ready to be attached as a partition (in the session's
    default_tablespace): columns, defaults and checks of the parent, the key as primary key,
    the parent's indexes (ATTACH adopts them instead of building its own)."""
    statements = [
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING GENERATED "
            "INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)"
        ).format(sql.Identifier(name), sql.Identifier(shape.table)),
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            sql.Identifier(name), sql.Identifier(f"{name}_pkey"), _names(shape.key)
        ),
    ]
    for index, tail in shape.indexes:
        statements.append(
            sql.SQL("CREATE INDEX {} ON {} {}").format(
                sql.Identifier(f"{index}_{name}"), sql.Identifier(name), sql.SQL(tail)
            )
        )
    return statements


def canonical_names(conn: psycopg.Connection, table: str) -> None:
    """Rename each local partition's key and index copies to ``<partition>_pkey`` and
    ``<parent index>_p<remainder>`` (what the migration named them)."""
    for partition in read_partitions(conn, table):
        if partition.placement is Placement.SERVER:
            continue
        suffix = partition.name[len(table) :]
        rows = conn.execute(
            "SELECT c.relname, x.indisprimary, p.relname FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid "
            "LEFT JOIN pg_inherits h ON h.inhrelid = x.indexrelid "
            "LEFT JOIN pg_class p ON p.oid = h.inhparent "
            "WHERE x.indrelid = to_regclass(%s)",
            (partition.name,),
        ).fetchall()
        for index, primary_key, parent in rows:
            wanted = f"{partition.name}_pkey" if primary_key else (parent and parent + suffix)
            if wanted and wanted != index:
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(index), sql.Identifier(wanted)
                    )
                )


def add_truncate_guard(conn: psycopg.Connection, shape: TableShape, name: str) -> None:
    """The history's TRUNCATE guard on a local partition of a tracked table (PostgreSQL
    does not clone statement triggers to partitions; foreign tables cannot have them)."""
    if shape.truncate_guard:
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER movierec_no_truncate BEFORE TRUNCATE ON {} "
                "FOR EACH STATEMENT EXECUTE FUNCTION movierec_forbid_truncate({})"
            ).format(sql.Identifier(name), sql.Literal(shape.table))
        )


def _names(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)
