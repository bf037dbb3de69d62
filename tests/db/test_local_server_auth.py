"""The servers movierec starts trust no connection (issue 19, hole 1).

Before, ``initdb --auth=trust``: any local user or process connected as the superuser without
a password, read every password hash and ran shell commands with ``COPY ... TO PROGRAM``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from movierec.db import LocalPostgres
from movierec.db.credentials import PasswordFile, scram_verifier
from movierec.db.engines import libpq_conninfo
from movierec.db.roles import APP_ROLES, WEB_ROLE
from movierec.db.tools import pg_bin_dir, run_pg_tool, running_as_root
from movierec.errors import ConfigError

NOBODY = "nobody"


def psql_as(os_user: str, *args: str) -> subprocess.CompletedProcess:
    """psql as another OS user, with no password anywhere it could find one."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "5"}
    argv = [str(pg_bin_dir() / "psql"), "-X", "-w", "-A", "-t", *args]
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", os_user, "--", *argv],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def other_os_user():
    if not running_as_root():
        pytest.skip("needs root to act as another OS user (runuser); CI runs as root")
    return NOBODY


@pytest.mark.parametrize("role", ["postgres", WEB_ROLE])
def test_another_os_user_without_a_password_is_refused_over_tcp(pg_server, other_os_user, role):
    done = psql_as(
        other_os_user, "-h", "127.0.0.1", "-p", str(pg_server.port), "-U", role, "-d", "postgres",
        "-c", "SELECT rolpassword FROM pg_authid",
    )  # fmt: skip
    assert done.returncode != 0
    assert "password" in done.stderr  # asked for one (-w: none to give), not let in


def test_another_os_user_cannot_use_the_socket(pg_server, other_os_user):
    socket_dir = json.loads(pg_server.info_file.read_text())["socket_dir"]
    done = psql_as(
        other_os_user, "-h", socket_dir, "-p", str(pg_server.port), "-U", "postgres",
        "-d", "postgres", "-c", "COPY (SELECT 1) TO PROGRAM 'id'",
    )  # fmt: skip
    assert done.returncode != 0
    assert "id=" not in done.stdout


def test_the_servers_own_os_user_may_use_the_socket_as_the_superuser(pg_server):
    """pgBackRest connects so (peer, mapped to the superuser only)."""
    socket_dir = json.loads(pg_server.info_file.read_text())["socket_dir"]
    out = run_pg_tool(
        "psql",
        ["-X", "-w", "-A", "-t", "-h", socket_dir, "-p", str(pg_server.port), "-U", "postgres",
         "-d", "postgres", "-c", "SELECT current_user"],
    )  # fmt: skip
    assert out.strip() == "postgres"


@pytest.mark.parametrize("role", ["postgres", WEB_ROLE])
@pytest.mark.parametrize("password", [None, "guess"])
def test_a_tcp_login_without_the_right_password_is_refused(pg_server, role, password):
    info = make_conninfo(
        host="127.0.0.1", port=pg_server.port, user=role, dbname="postgres",
        passfile="/nonexistent", connect_timeout=5, **({"password": password} if password else {}),
    )  # fmt: skip
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(info)


def test_every_app_role_logs_in_with_its_own_generated_password(pg_server, db_url, as_role):
    passwords = {role: pg_server.passwords.get(role) for role in ("postgres", *APP_ROLES)}
    assert len(set(passwords.values())) == len(passwords)  # one each, none shared
    for role in APP_ROLES:
        url = as_role(db_url, role)
        assert passwords[role] in url
        with psycopg.connect(libpq_conninfo(url, "test")) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_the_password_file_is_private_and_refused_when_others_may_read_it(tmp_path):
    store = PasswordFile(tmp_path)
    first = store.get("movierec_web")
    assert store.get("movierec_web") == first
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    os.chmod(store.path, 0o644)
    with pytest.raises(ConfigError, match="others may read it"):
        store.get("movierec_web")


def test_a_server_made_when_movierec_trusted_local_connections_is_closed_at_its_next_start():
    root = Path(tempfile.mkdtemp(prefix="movierec-test-legacy-"))
    os.chmod(root, 0o755)  # the postgres OS user must enter it when we are root
    server = LocalPostgres(root / "pg")
    server.init()
    (server.data_dir / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n"
    )
    server.start()
    try:
        hba = (server.data_dir / "pg_hba.conf").read_text()
        assert "trust" not in hba.replace("trusted", "")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
                passfile="/nonexistent", connect_timeout=5,
            )  # fmt: skip
        with server.connect() as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_verifier_is_what_postgresql_itself_stores(pg_server):
    """A verifier we make logs in as PostgreSQL's own would: the password never travels."""
    with pg_server.connect() as conn:
        conn.execute("CREATE ROLE verifier_check LOGIN")
        try:
            conn.execute(f"ALTER ROLE verifier_check PASSWORD '{scram_verifier('s3cret')}'")
            stored = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_check'"
            ).fetchone()[0]
            assert stored.startswith("SCRAM-SHA-256$4096:")
            info = make_conninfo(
                host="127.0.0.1", port=pg_server.port, user="verifier_check",
                password="s3cret", dbname="postgres",
            )  # fmt: skip
            with psycopg.connect(info) as other:
                assert other.execute("SELECT 1").fetchone() == (1,)
        finally:
            conn.execute("DROP ROLE verifier_check")
