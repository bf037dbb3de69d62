"""Places a partition can live besides the primary's default tablespace: shard servers
(postgres_fdw) and tablespaces.

A shard server is a ``CREATE SERVER`` of postgres_fdw with a ``USER MAPPING FOR PUBLIC``
holding the shard's user and password: every local role reads and writes the foreign
partitions as that user, while the parent's privileges still decide who may touch the table.
postgres_fdw lets a role that is not a superuser (the site's) use the mapping only when the
shard asks for the password, which every server movierec runs does (scram-sha-256); a shard
that trusts connections is refused to them, as it should be.
Its options: ``batch_size 1000`` (INSERTs into a foreign table go 1000 rows per round trip:
190k rows/s instead of 31k), ``fetch_size 10000``, ``async_capable`` (a scan over several
shards waits on all of them at once) and ``extensions 'pg_trgm'`` (trigram operators may be
shipped to the shard).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from movierec.config import Settings
from movierec.db.connect import connect
from movierec.db.partitions.catalog import check_name, primary
from movierec.db.tools import check_server_user_can_enter
from movierec.errors import BadInput, DatabaseUnavailable, NotFound, first_line

FDW_OPTIONS = {"batch_size": "1000", "fetch_size": "10000", "async_capable": "true"}


@dataclass(frozen=True)
class ShardServer:
    name: str
    host: str
    port: int
    dbname: str
    user: str | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class Tablespace:
    name: str
    location: str  # '' for pg_default


def _options(options: list[str] | None) -> dict[str, str]:
    return dict(option.split("=", 1) for option in options or ())


def _server_row(conn: psycopg.Connection, name: str) -> tuple[dict, dict]:
    row = conn.execute(
        "SELECT s.srvoptions, (SELECT um.umoptions FROM pg_user_mappings um "
        "  WHERE um.srvid = s.oid AND um.usename IN (current_user, 'public') "
        "  ORDER BY um.usename = 'public' LIMIT 1) "
        "FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw "
        "WHERE s.srvname = %s AND w.fdwname = 'postgres_fdw'",
        (name,),
    ).fetchone()
    if row is None:
        known = ", ".join(s.name for s in list_servers(conn)) or "none yet"
        raise NotFound(f"no shard server named {name!r} (known: {known})")
    return _options(row[0]), _options(row[1])


def list_servers(conn: psycopg.Connection) -> list[ShardServer]:
    """The postgres_fdw servers known to the primary, in name order."""
    servers = []
    for name, options in conn.execute(
        "SELECT s.srvname, s.srvoptions FROM pg_foreign_server s "
        "JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw "
        "WHERE w.fdwname = 'postgres_fdw' ORDER BY 1"
    ):
        opts = _options(options)
        host = opts.get("host", "localhost")
        dbname = opts.get("dbname", "postgres")
        servers.append(ShardServer(name, host, int(opts.get("port", 5432)), dbname, None))
    return servers


def get_server(conn: psycopg.Connection, name: str) -> ShardServer:
    """The shard server ``name``. Raises :class:`NotFound`."""
    server, mapping = _server_row(conn, name)
    return ShardServer(
        name,
        server.get("host", "localhost"),
        int(server.get("port", 5432)),
        server.get("dbname", "postgres"),
        mapping.get("user"),
    )


def server_conninfo(conn: psycopg.Connection, name: str, timeout: int = 5) -> str:
    """How this process reaches shard ``name``: its options and user mapping."""
    server, mapping = _server_row(conn, name)
    params = {k: v for k, v in server.items() if k in ("host", "port", "dbname")}
    params.update({k: v for k, v in mapping.items() if k in ("user", "password")})
    return make_conninfo(**params, connect_timeout=timeout, application_name="movierec-shard")


def move_server(conn: psycopg.Connection, name: str, port: int) -> None:
    """Point shard ``name`` at ``port`` (its server restarted on another) when it is not
    there already; committed when ``conn``'s block ends. Raises :class:`NotFound`."""
    if get_server(conn, name).port != port:
        conn.execute(
            sql.SQL("ALTER SERVER {} OPTIONS (SET port {})").format(
                sql.Identifier(name), sql.Literal(str(port))
            )
        )


def connect_server(
    conn: psycopg.Connection, name: str
) -> AbstractContextManager[psycopg.Connection]:
    """An autocommit connection to shard ``name`` (``conn``: the primary).

    Raises :class:`NotFound` for an unknown server, :class:`DatabaseUnavailable` when it
    does not answer.
    """
    server = get_server(conn, name)
    return connect(server_conninfo(conn, name), f"shard server {name} ({server.address})")


def probe_from_primary(conn: psycopg.Connection, name: str) -> None:
    """Check that the primary itself reaches shard ``name`` through postgres_fdw.

    Creates and drops a foreign table inside a savepoint that is always rolled back.
    Raises :class:`DatabaseUnavailable`.
    """
    probe = sql.Identifier(f"movierec_probe_{name}")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(
                sql.SQL(
                    "CREATE FOREIGN TABLE {} (datname name) SERVER {} "
                    "OPTIONS (schema_name 'pg_catalog', table_name 'pg_database')"
                ).format(probe, sql.Identifier(name))
            )
            conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(probe))
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"the primary cannot reach shard server {name}: {first_line(exc)}"
        ) from exc


def add_server(settings: Settings, name: str, dsn: str) -> ShardServer:
    """Register the PostgreSQL server at ``dsn`` (libpq URL or key=value string) as shard
    ``name``: CREATE SERVER (postgres_fdw) and a USER MAPPING FOR PUBLIC with its user and
    password.

    Refuses, changing nothing, when the shard does not answer (from here or from the
    primary). Raises :class:`BadInput` (bad name or DSN, name taken),
    :class:`DatabaseUnavailable` and :class:`PartitionError`.
    """
    check_name(name, "server")
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"cannot read the DSN: {first_line(exc)}") from None
    host, port = params.get("host", "localhost"), str(params.get("port", 5432))
    dbname = params.get("dbname") or params.get("user") or "postgres"
    where = f"shard server {name} ({host}:{port}/{dbname})"
    try:
        with connect(make_conninfo(dsn, connect_timeout=5), where) as remote:
            remote.execute("SELECT 1")
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"{exc}; nothing was added") from exc
    with primary(settings) as conn:
        if any(s.name == name for s in list_servers(conn)):
            raise BadInput(f"a shard server named {name!r} exists already")
        options = {"host": host, "port": port, "dbname": dbname, **FDW_OPTIONS}
        has_trgm = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if has_trgm.fetchone():
            options["extensions"] = "pg_trgm"
        conn.execute(
            sql.SQL("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({})").format(
                sql.Identifier(name), _option_list(options)
            )
        )
        mapping = {k: params[k] for k in ("user", "password") if params.get(k)}
        statement = sql.SQL("CREATE USER MAPPING FOR PUBLIC SERVER {}").format(sql.Identifier(name))
        if mapping:
            statement += sql.SQL(" OPTIONS ({})").format(_option_list(mapping))
        conn.execute(statement)
        probe_from_primary(conn, name)
        server = get_server(conn, name)
    return server


def _option_list(options: dict[str, str]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(str(v))) for k, v in options.items()
    )


def list_tablespaces(conn: psycopg.Connection) -> list[Tablespace]:
    rows = conn.execute(
        "SELECT spcname, pg_tablespace_location(oid) FROM pg_tablespace "
        "WHERE spcname <> 'pg_global' ORDER BY 1"
    )
    return [Tablespace(name, location) for name, location in rows]


def check_tablespace(conn: psycopg.Connection, name: str) -> None:
    """Raise :class:`NotFound` unless tablespace ``name`` exists."""
    known = [t.name for t in list_tablespaces(conn)]
    if name not in known:
        raise NotFound(f"no tablespace named {name!r} (known: {', '.join(known)})")


def add_tablespace(settings: Settings, name: str, directory: Path | str) -> Tablespace:
    """CREATE TABLESPACE ``name`` in ``directory`` (another disk, say).

    When the primary runs on this machine, ``directory`` must exist, be empty, belong to the
    OS user that owns the data directory (``postgres``) and be reachable by it. Raises
    :class:`BadInput` (bad name or directory, name taken) and :class:`PartitionError`.
    """
    check_name(name, "tablespace")
    path = Path(directory)
    if not path.is_absolute():
        raise BadInput(f"the tablespace directory must be an absolute path, not {directory}")
    with primary(settings, autocommit=True) as conn:  # CREATE TABLESPACE refuses transactions
        if any(t.name == name for t in list_tablespaces(conn)):
            raise BadInput(f"a tablespace named {name!r} exists already")
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        if data_dir.exists():  # the server runs here: check what it would refuse, clearly
            _check_directory(path, data_dir)
            _check_no_standby_here(conn)
        conn.execute(
            sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(name), sql.Literal(str(path))
            )
        )
    return Tablespace(name, str(path))


def _check_no_standby_here(conn) -> None:
    """Refuse while a standby on this machine streams from the server: it would replay
    CREATE TABLESPACE into the very same directory (PostgreSQL wipes and re-creates it there)
    and the two servers would share its files. A replica made after the tablespace maps it
    to a directory of its own (pg_basebackup --tablespace-mapping, as Patroni's members do).
    """
    here = conn.execute(
        "SELECT string_agg(application_name, ', ') FROM pg_stat_replication "
        "WHERE client_addr IS NULL OR client_addr = inet_server_addr() "
        "OR host(client_addr) IN ('127.0.0.1', '::1')"
    ).fetchone()[0]
    if here:
        raise BadInput(
            f"standby {here} on this machine streams from this server and would share the "
            "tablespace's directory; add tablespaces before replicas (remove the replicas, "
            "add the tablespace, then create them again)"
        )


def _check_directory(path: Path, data_dir: Path) -> None:
    if not path.is_dir():
        raise BadInput(f"{path} is not a directory; create it first")
    owner = data_dir.stat().st_uid
    if path.stat().st_uid != owner:
        raise BadInput(
            f"{path} must belong to the database server's OS user (uid {owner}, the owner of "
            f"its data directory): chown {_user_name(owner)} {path}"
        )
    if any(path.iterdir()):
        raise BadInput(f"{path} is not empty")
    check_server_user_can_enter(path)


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)
