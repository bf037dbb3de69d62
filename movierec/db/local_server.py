"""A private PostgreSQL server for the demo, the local cluster and the tests.

It lives in a state directory (data dir, socket dir, log, role passwords), listens on
127.0.0.1 only, on a free port, and trusts no connection: TCP logins need a password
(scram-sha-256; :mod:`movierec.db.credentials` keeps them), and the Unix socket (in a
directory only the server's OS user may enter) takes only that OS user, as the superuser
(peer): pgBackRest connects so. Before, every local user and process could connect as the
superuser without a password, read every password hash and run shell commands with ``COPY
... TO PROGRAM``. Never touches the machine's own cluster.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from movierec.db.connect import connect
from movierec.db.credentials import PasswordFile, scram_verifier
from movierec.db.roles import url_as
from movierec.db.tools import (
    SERVER_USER,
    check_server_user_can_enter,
    give_to_server_user,
    run_pg_tool,
    running_as_root,
)
from movierec.errors import OpsCommandFailed
from movierec.files import write_atomically
from movierec.ports import port_free

SUPERUSER = "postgres"
# No trust anywhere. The socket takes only the server's own OS user, as the superuser (the
# ident map names that OS user); every TCP login, replication included, needs a password.
HBA = """\
# Written by movierec at every start (movierec/db/local_server.py); edits are lost.
# TYPE  DATABASE     USER       ADDRESS         METHOD
local   all          postgres                   peer map=server_user
host    all          all        127.0.0.1/32    scram-sha-256
host    replication  all        127.0.0.1/32    scram-sha-256
"""

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",  # a throwaway server: durability costs seconds and buys nothing here
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "200",
    "log_min_messages": "warning",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalPostgres:
    """A PostgreSQL server owned by movierec, kept under ``state_dir``."""

    state_dir: Path
    port: int = 0
    durable: bool = False
    # Extra postgresql.conf settings (values as they would be written there, strings quoted),
    # e.g. archive_command for pgBackRest or hot_standby for a replica.
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "postgres.log"

    @property
    def info_file(self) -> Path:
        return self.state_dir / "server.json"

    @property
    def passwords(self) -> PasswordFile:
        return PasswordFile(self.state_dir)

    def url(self, dbname: str = "postgres") -> str:
        """The owner's (superuser's) URL of database ``dbname``, password included."""
        return url_as(
            f"postgresql+psycopg://127.0.0.1:{self.port}/{dbname}",
            SUPERUSER,
            self.passwords.get(SUPERUSER),
        )

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """A libpq conninfo for the superuser on database ``dbname``, password included."""
        return make_conninfo(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=self.passwords.get(SUPERUSER),
            dbname=dbname,
            connect_timeout=5,
        )

    def as_role(self, url: str, role: str) -> str:
        """``url`` (a database of this server) as the app role ``role``
        (:mod:`movierec.db.roles`), with the password this server gave it
        (:meth:`give_passwords`)."""
        return url_as(url, role, self.passwords.get(role))

    def give_passwords(self, *roles: str) -> None:
        """Set the passwords of ``roles`` (those that exist: migration 0007 makes the app's)
        to the ones kept for this server. Only the verifier is sent."""
        with self.connect() as conn:
            for role in roles:
                found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if found.fetchone() is None:
                    continue
                verifier = scram_verifier(self.passwords.get(role))
                stmt = sql.SQL("ALTER ROLE {} PASSWORD {}")
                conn.execute(stmt.format(sql.Identifier(role), sql.Literal(verifier)))

    def connect(self, dbname: str = "postgres") -> AbstractContextManager[psycopg.Connection]:
        """An autocommit superuser connection to database ``dbname``
        (:func:`movierec.db.connect.connect`: it raises :class:`DatabaseUnavailable`)."""
        return connect(self.admin_conninfo(dbname), f"PostgreSQL in {self.state_dir}")

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        try:
            run_pg_tool("pg_ctl", ["status", "-D", str(self.data_dir)], timeout=10)
        except OpsCommandFailed:
            return False
        return True

    def init(self) -> None:
        """initdb into the state directory (once)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.state_dir.resolve()
        check_server_user_can_enter(self.state_dir)
        give_to_server_user(self.state_dir)
        if self.is_initialized():
            return
        # A first start sets the superuser's password (_set_superuser_password); until then
        # the socket's peer rule (HBA, written before any start) is the only way in.
        run_pg_tool(
            "initdb",
            ["-D", str(self.data_dir), "-U", SUPERUSER, "--auth-local=peer",
             "--auth-host=reject", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            timeout=120,
        )  # fmt: skip

    @property
    def conf_file(self) -> Path:
        return self.data_dir / "movierec.conf"

    def recorded_port(self) -> int | None:
        """The port this server last started on (its info file), None before a first start."""
        try:
            return int(json.loads(self.info_file.read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def start(self) -> LocalPostgres:
        """Initialise if needed and start on ``port``. Idempotent.

        With port 0 a server that ran before comes back on the port it had (its standbys,
        the primary's postgres_fdw servers and the cluster's web instances know it by that
        port); only a first start takes a free one. Raises :class:`OpsCommandFailed` when that
        port is taken by another program.
        """
        self.init()
        if self.is_running():
            self.port = json.loads(self.info_file.read_text())["port"]
            return self
        self.port = self.port or self.recorded_port() or free_port()
        if not port_free(self.port):
            raise OpsCommandFailed(
                f"port {self.port} of the server in {self.state_dir} is in use by another "
                "program; stop that program (the servers that reach this one know it by that "
                "port)"
            )
        socket_dir = Path(tempfile.mkdtemp(prefix="movierec-pgsock-"))
        give_to_server_user(socket_dir)
        self._write_conf(socket_dir)
        self._write_hba()
        # Looked at before the start: a restored copy may finish its recovery (and delete
        # recovery.signal) before pg_ctl returns, while it still refuses writes.
        recovering = any(
            (self.data_dir / f).exists() for f in ("standby.signal", "recovery.signal")
        )
        run_pg_tool(
            "pg_ctl",
            ["start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60"],
            timeout=90,
        )
        self.info_file.write_text(json.dumps({"port": self.port, "socket_dir": str(socket_dir)}))
        self._wait_for_port()
        if not recovering:  # a standby, or a restored copy, has its source's roles
            self._set_superuser_password(socket_dir)
        return self

    def _write_hba(self) -> None:
        """pg_hba.conf and pg_ident.conf as :data:`HBA` says (also over a server made when
        movierec trusted local connections)."""
        os_user = SERVER_USER if running_as_root() else pwd.getpwuid(os.geteuid()).pw_name
        ident = f"# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\nserver_user {os_user} {SUPERUSER}\n"
        files = {"pg_hba.conf": HBA, "pg_ident.conf": ident}
        for name, text in files.items():
            path = self.data_dir / name
            path.write_text(text)
            path.chmod(0o600)
            give_to_server_user(path)

    def _set_superuser_password(self, socket_dir: Path) -> None:
        """Give the superuser the password kept for it, through the socket as the server's
        OS user: at every start, so that a fresh server, or one made when movierec trusted
        local connections, gets it (a psql run, some 30 ms)."""
        # A standby, or a restored copy still replaying, is read-only and has its source's
        # roles, passwords included: only a server that takes writes sets it.
        verifier = scram_verifier(self.passwords.get(SUPERUSER))
        statement = (
            "DO $$ BEGIN IF NOT pg_is_in_recovery() THEN "
            f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}'; END IF; END $$"
        )
        run_pg_tool(
            "psql",
            ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(socket_dir), "-p", str(self.port),
             "-U", SUPERUSER, "-d", "postgres", "-c", statement],
            timeout=30,
        )  # fmt: skip

    def _write_conf(self, socket_dir: Path) -> None:
        """Our settings go in their own file, included from postgresql.conf.

        A file rather than ``-c`` options: values with spaces (archive_command) survive, and
        ALTER SYSTEM (postgresql.auto.conf, read last) can still override them.
        """
        settings = dict(SERVER_SETTINGS, port=str(self.port))
        if self.durable:
            for key in ("fsync", "synchronous_commit", "full_page_writes"):
                settings.pop(key)
        settings.update(self.settings)
        settings["unix_socket_directories"] = f"'{socket_dir}'"
        self.conf_file.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        give_to_server_user(self.conf_file)
        main_conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'movierec.conf'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write(include)

    def socket_dir(self) -> Path:
        """The Unix socket directory of the running server (pgBackRest connects through it)."""
        return Path(json.loads(self.info_file.read_text())["socket_dir"])

    def _wait_for_port(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise OpsCommandFailed(f"PostgreSQL did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) if it runs."""
        if self.is_running():
            run_pg_tool("pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "fast", "-w"])

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE ``name`` (optionally from ``template``) and return its URL."""
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                conn.execute(stmt)
        return self.url(name)

    @property
    def url_file(self) -> Path:
        """Where :meth:`save_url` keeps a URL for admins (mode 0600)."""
        return self.state_dir / "database_url"

    def save_url(self, url: str) -> Path:
        """Keep ``url`` (password included) in :attr:`url_file`, readable by us alone, for
        admin commands: ``export MOVIEREC_DATABASE_URL="$(cat <file>)"``."""
        write_atomically(self.url_file, url + "\n", ".database_url-")
        return self.url_file

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` (if it exists), closing its sessions."""
        with self.connect() as conn:
            stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(stmt.format(sql.Identifier(name)))
