"""Where each partition lives, and how many rows and bytes it holds: the primary's catalog for
its own partitions, each shard server for the partitions it holds (one connection per shard;
an unreachable one leaves its partitions' figures unknown, saying why)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

import psycopg
from psycopg import sql

from movierec.config import Settings
from movierec.db.partitions.catalog import Partition, Placement, primary, read_partitions
from movierec.db.partitions.servers import connect_server
from movierec.errors import MovierecError, first_line


def list_partitions(
    settings: Settings, table: str | None = None, exact: bool = False
) -> list[Partition]:
    """Every partition (of ``table``), where it lives, its rows and bytes.

    Rows are estimates (the planner's) unless ``exact`` (count(*), a full scan of each).
    Figures of foreign partitions come from their shard server (one connection each); an
    unreachable shard leaves them ``None`` with the reason in ``error``. Raises
    :class:`NotFound` for an unknown table, :class:`DatabaseUnavailable` when the primary
    does not answer.
    """
    with primary(settings) as conn, ExitStack() as shards:
        remotes: dict[str, psycopg.Connection | str] = {}
        result = []
        for partition in read_partitions(conn, table):
            if partition.placement is Placement.SERVER:
                if partition.where not in remotes:
                    remotes[partition.where] = _open_shard(conn, shards, partition.where)
                partition = _remote_figures(remotes[partition.where], partition, exact)
            elif exact:
                rows = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition.name))
                ).fetchone()[0]
                partition = replace(partition, rows=rows, exact=True)
            result.append(partition)
    return result


def _open_shard(conn: psycopg.Connection, stack: ExitStack, server: str):
    """A connection to ``server`` kept open by ``stack``, or why there is none."""
    try:
        return stack.enter_context(connect_server(conn, server))
    except MovierecError as exc:
        return str(exc)


def _remote_figures(
    remote: psycopg.Connection | str, partition: Partition, exact: bool
) -> Partition:
    if isinstance(remote, str):
        return replace(partition, error=remote)
    schema, _, name = (partition.remote_table or "").partition(".")
    try:
        row = remote.execute(
            "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        ).fetchone()
        if row is None:
            return replace(
                partition, error=f"{partition.remote_table} is missing on {partition.where}"
            )
        rows, size = row
        if exact:
            rows = remote.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()[0]
    except psycopg.Error as exc:
        return replace(partition, error=f"shard server {partition.where}: {first_line(exc)}")
    return replace(partition, rows=rows if rows >= 0 else None, exact=exact, bytes=size)
