"""A tablespace's disk filling up (issue 24's drills): a clear error, and nothing stored is
damaged. The disk is a real size-limited filesystem (a 4 MiB tmpfs) mounted for the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from movierec.db import Database
from movierec.db.errors import StorageFull
from movierec.db.partitions import add_tablespace, place
from movierec.db.roles import WEB_ROLE
from movierec.db.tools import give_to_server_user, running_as_root
from movierec.web.users import rate

pytestmark = pytest.mark.integration
FULL_AT = "4m"
SEED = (
    "INSERT INTO users (id, username) SELECT i, 'u' || i FROM generate_series(1, 4000) i",
    "INSERT INTO movies (id, title) SELECT i, 'm' || i FROM generate_series(1, 200) i",
)
FILL = text(
    "INSERT INTO ratings (user_id, movie_id, rating) "
    "SELECT u, m, 3.5 FROM unnest(CAST(:users AS bigint[])) u, generate_series(1, 200) m"
)


@pytest.fixture
def small_disk():
    """A directory on its own 4 MiB filesystem, owned by the database server's OS user."""
    if not running_as_root():
        pytest.skip("mounting a size-limited filesystem needs root; CI runs as root")
    root = Path(tempfile.mkdtemp(prefix="movierec-disk-"))
    os.chmod(root, 0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FULL_AT},mode=0755", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    directory = root / "disk"
    directory.mkdir()
    give_to_server_user(directory)
    yield directory
    subprocess.run(["umount", "-l", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def test_a_full_tablespace_refuses_writes_clearly_and_keeps_what_it_holds(
    pg_server, settings, database, small_disk, as_role
):
    name = f"small_{uuid.uuid4().hex[:8]}"
    with database.session() as s:
        for statement in SEED:
            s.execute(text(statement))
    add_tablespace(settings, name, small_disk)
    place(settings, "ratings_p1", tablespace=name)
    site = Database(settings.replace(database_url=as_role(settings.database_url, WEB_ROLE)))
    try:
        users = _users_in(database, 1)
        refused = None
        for start in range(0, len(users), 50):  # fill the disk, 50 users' ratings at a time
            rows_before = _fingerprint(database)[0]
            try:
                with database.session() as s:
                    s.execute(FILL, {"users": users[start : start + 50]})
            except StorageFull as exc:
                refused = exc
                break
        assert refused is not None, f"{FULL_AT} never filled up"
        assert "disk is full" in str(refused) and "\n" not in str(refused)
        before = _fingerprint(database)
        assert before[0] == rows_before  # the refused transaction left nothing half-written
        with pytest.raises(StorageFull), site.session() as s:  # the site's own write path
            for movie in range(1, 201):
                rate(s, users[-1], movie, 4.0)
        with site.session() as s:  # partitions on other disks take writes as before
            rate(s, _users_in(database, 0)[0], 1, 4.0)
        assert _fingerprint(database) == before  # nothing stored was damaged
    finally:
        site.dispose()
        pg_server.drop_database(make_url(settings.database_url).database)
        with pg_server.connect() as conn:
            conn.execute(f'DROP TABLESPACE IF EXISTS "{name}"')


def _users_in(database, remainder: int) -> list[int]:
    """The users whose ratings go to partition ``remainder``."""
    with database.session() as s:
        return list(
            s.scalars(
                text(
                    "SELECT id FROM users WHERE satisfies_hash_partition("
                    "'ratings'::regclass, 4, :r, id) ORDER BY id"
                ),
                {"r": remainder},
            )
        )


def _fingerprint(database) -> tuple[int, str]:
    """Rows and content of the partition on the small disk."""
    with database.session() as s:
        return tuple(
            s.execute(
                text(
                    "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY user_id, movie_id)) "
                    "FROM ratings_p1 t"
                )
            ).one()
        )
