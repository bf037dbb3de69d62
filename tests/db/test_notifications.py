"""Change notifications (migration 0006): every write of a user's data tells listeners which
user, bulk loads tell them "everyone", and the listener reports losing its connection."""

from __future__ import annotations

import queue

import pytest
from alembic import command
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import delete, insert, text, update

from movierec.db import Database, Movie, NotInterested, Preference, Rating, User, upgrade
from movierec.db.bulk import bulk_transaction
from movierec.db.engines import libpq_conninfo
from movierec.db.migrate import alembic_config
from movierec.db.notifications import EVERYONE, Listener


class Heard:
    """A started listener and what it heard, in order."""

    def __init__(self, url: str):
        self.payloads: queue.Queue[str] = queue.Queue()
        self.states: queue.Queue[bool] = queue.Queue()
        self.listener = Listener(url, self.payloads.put, self.states.put, retry_seconds=0.1)
        self.listener.start()
        assert self.states.get(timeout=10) is True

    def next(self) -> str:
        return self.payloads.get(timeout=10)

    def nothing_more(self) -> bool:
        try:
            self.payloads.get(timeout=0.3)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def heard(db_url):
    listening = Heard(db_url)
    yield listening
    listening.listener.stop()


def test_each_write_of_a_users_data_names_the_user_once_per_transaction(settings, heard):
    with Database(settings) as db:
        with db.session() as s:
            user, movie = User(username="dee"), Movie(title="Heat", genres=["Crime"])
            s.add_all([user, movie])
            s.flush()
            s.add(Rating(user_id=user.id, movie_id=movie.id, rating=4.0))
            s.add(Preference(user_id=user.id, genres=["Crime"]))
            s.add(NotInterested(user_id=user.id, movie_id=movie.id))
        # Four rows of one user, one transaction: one notification, at commit.
        assert heard.next() == str(user.id)
        assert heard.nothing_more()
        for statement in (
            update(Rating).where(Rating.user_id == user.id).values(rating=2.0),
            delete(NotInterested).where(NotInterested.user_id == user.id),
            update(User).where(User.id == user.id).values(session_generation=7),
        ):
            with db.session() as s:
                s.execute(statement)
            assert heard.next() == str(user.id)
        with db.session() as s:  # rolled back: nothing is sent
            s.execute(delete(Rating).where(Rating.user_id == user.id))
            s.rollback()
        assert heard.nothing_more()


def test_a_bulk_load_tells_everyone(database, heard):
    with bulk_transaction(database, "test load", "test", ["ratings"]):
        pass
    assert heard.next() == EVERYONE


def test_the_listener_reports_a_lost_connection_and_comes_back(settings, heard):
    with Database(settings) as db, db.session() as s:
        s.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        )
    assert heard.states.get(timeout=10) is False
    assert heard.states.get(timeout=10) is True


def test_the_triggers_go_with_a_downgrade(db_url, settings, heard):
    command.downgrade(alembic_config(db_url), "0005")
    with Database(settings) as db, db.session() as s:
        # Core, naming one column: the model has columns later migrations add (locked_at).
        s.execute(insert(User).values(username="eve"))
    assert heard.nothing_more()
    upgrade(db_url)
    with Database(settings) as db, db.session() as s:
        s.add(User(username="fay"))
    assert heard.next().isdigit()


def test_libpq_conninfo_keeps_credentials_and_options_of_the_url():
    info = conninfo_to_dict(
        libpq_conninfo("postgresql+psycopg://bob:s%40cret@db:5433/movies?sslmode=require", "x")
    )
    assert info == {
        "host": "db", "port": "5433", "user": "bob", "password": "s@cret", "dbname": "movies",
        "sslmode": "require", "connect_timeout": "5", "application_name": "x",
    }  # fmt: skip
    other = conninfo_to_dict(libpq_conninfo("postgresql://u@h/d", "y", 2, host="h2", port=6))
    assert (other["host"], other["port"], other["connect_timeout"]) == ("h2", "6", "2")
