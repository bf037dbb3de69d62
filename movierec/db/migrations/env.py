"""Alembic environment: run migrations against the URL the caller put in the config."""

import re

from alembic import context
from sqlalchemy import create_engine, pool

from movierec.db.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


# Tables that migrations create with raw SQL and no model describes (the change history is
# partitioned by month and written only by triggers): autogenerate must not propose dropping them.
UNMODELLED = ("change_history", "change_sets")


# Hash partitions (<table>_p<k>) are made by migration 0004 and `db partitions`, not by models.
PARTITION = re.compile(r".+_p\d+$")


def _include_name(name, type_, parent_names) -> bool:
    if type_ != "table":
        return True
    return not (name.startswith(UNMODELLED) or PARTITION.match(name))


def _run(connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, include_name=_include_name
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
