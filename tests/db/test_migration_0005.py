"""Migration 0005: the unpartitioned ``not_interested`` table, down and up again."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from movierec.db import Database, NotInterested, User, upgrade
from movierec.db.migrate import alembic_config, current_tables


def test_not_interested_downgrades_and_upgrades(db_url):
    assert "not_interested" in current_tables(db_url)
    command.downgrade(alembic_config(db_url), "0004")
    assert "not_interested" not in current_tables(db_url)
    upgrade(db_url)
    assert "not_interested" in current_tables(db_url)


def test_not_interested_keys_and_cascade(settings):
    with Database(settings) as db:
        with db.session() as s:
            user = User(username="dee")
            s.add(user)
            s.flush()
            s.add(NotInterested(user_id=user.id, movie_id=42))
        with pytest.raises(IntegrityError), db.primary.begin() as conn:  # the primary key
            conn.execute(NotInterested.__table__.insert().values(user_id=user.id, movie_id=42))
        with db.session() as s:
            s.execute(delete(User).where(User.id == user.id))
        with db.session() as s:
            assert s.scalars(select(NotInterested)).all() == []  # ON DELETE CASCADE
