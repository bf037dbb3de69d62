"""A Patroni member's configuration as movierec renders it (no server started): the group's
passwords reach the member's own copy, the file is private, nothing is trusted, every
tablespace is mapped from the other members' directories, and the settings naming a
member's data directory name its own."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from movierec.db.patroni import MEMBER_DATA_DIR, Group, Member, render_config, write_config


@pytest.fixture
def group(tmp_path) -> Group:
    root = tmp_path / "postgres"
    root.mkdir()
    members = tuple(Member(f"pg{i}", root / f"pg{i}", 7000 + i, 7100 + i) for i in (1, 2))
    settings = {"archive_command": f"pgbackrest --pg1-path={MEMBER_DATA_DIR} archive-push %p"}
    return Group(
        "main", root, "http://127.0.0.1:2379", members, 7200, 7201,
        tablespaces=("disk2",), settings=settings,
    )  # fmt: skip


def test_a_new_members_copy_of_the_passwords_is_the_groups(group):
    written = write_config(group, group.members[0])
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    group_file = json.loads(group.passwords_owner.passwords.path.read_text())
    member = group.members[0].local
    assert json.loads(member.passwords.path.read_text()) == group_file
    assert {"postgres", "replicator", "rewinder", "patroni"} <= set(group_file)
    # The member's URL logs in with the password the group's bootstrap sets.
    assert group_file["postgres"] in member.url()
    text = written.read_text()
    assert "trust" not in text
    for password in group_file.values():
        assert password in text


def test_each_member_maps_the_tablespaces_and_names_its_own_data_dir(group):
    pg1, pg2 = group.members
    text = render_config(group, pg2, Path("/tmp/sock"))
    mine, theirs = group.tablespace_dir(pg2, "disk2"), group.tablespace_dir(pg1, "disk2")
    assert f'{{"tablespace-mapping": "{theirs}={mine}"}}' in text
    assert f"--pg1-path={pg2.local.data_dir} archive-push" in text
    assert MEMBER_DATA_DIR not in text
    assert str(pg1.local.data_dir) + " archive-push" not in text
