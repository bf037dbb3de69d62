"""Schema changes through Alembic, driven from Python (no alembic.ini to find)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import OperationalError

from movierec.db.engines import sqlalchemy_url
from movierec.errors import DatabaseUnavailable, first_line

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``. Raises :class:`DatabaseUnavailable`."""
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {first_line(exc)}") from exc


def current_tables(url: str) -> list[str]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()
