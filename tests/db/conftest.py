"""Fixtures for the database tests that connect as the owner and as the app roles."""

from __future__ import annotations

import psycopg
import pytest

from movierec.db.engines import libpq_conninfo


@pytest.fixture
def connect(as_role):
    """``connect(db_url, role=None)``: an autocommit psycopg connection as ``role`` (the
    owner when None)."""

    def connect(db_url: str, role: str | None = None) -> psycopg.Connection:
        url = as_role(db_url, role) if role else db_url
        return psycopg.connect(libpq_conninfo(url, "movierec_tests"), autocommit=True)

    return connect
