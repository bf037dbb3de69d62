"""Database layer: schema, migrations, engines, the local server helper.

>>> from movierec.config import load_settings
>>> from movierec.db import Database
>>> db = Database(load_settings())                       # doctest: +SKIP
>>> with db.session(readonly=True) as s:                  # doctest: +SKIP
...     s.scalar(select(func.count()).select_from(Movie))
"""

from movierec.db.engines import Database, make_engine, sqlalchemy_url
from movierec.db.errors import ShardUnavailable
from movierec.db.local_server import LocalPostgres
from movierec.db.migrate import upgrade
from movierec.db.schema import (
    GENRES,
    Base,
    Identity,
    Movie,
    NotInterested,
    Preference,
    Rating,
    Search,
    User,
)

__all__ = [
    "GENRES",
    "Base",
    "Database",
    "Identity",
    "LocalPostgres",
    "Movie",
    "NotInterested",
    "Preference",
    "Rating",
    "Search",
    "ShardUnavailable",
    "User",
    "make_engine",
    "sqlalchemy_url",
    "upgrade",
]
