"""Partitioned tables: where each partition lives, moving partitions, writing rows.

:mod:`~movierec.db.partitions.catalog` says what is partitioned and how;
:mod:`~movierec.db.partitions.servers` adds shard servers and tablespaces;
:mod:`~movierec.db.partitions.placement` lists, moves and re-partitions;
:mod:`~movierec.db.partitions.rows` writes rows without ``ON CONFLICT``.
"""

from movierec.db.partitions.catalog import (
    DEFAULT_TABLESPACE,
    Partition,
    PartitionError,
    Placement,
)
from movierec.db.partitions.placement import (
    Orphans,
    PlaceReport,
    RepartitionReport,
    check_references,
    list_partitions,
    place,
    repartition,
)
from movierec.db.partitions.rows import upsert
from movierec.db.partitions.servers import ShardServer, Tablespace, add_server, add_tablespace

__all__ = [
    "DEFAULT_TABLESPACE",
    "Orphans",
    "Partition",
    "PartitionError",
    "PlaceReport",
    "Placement",
    "RepartitionReport",
    "ShardServer",
    "Tablespace",
    "add_server",
    "add_tablespace",
    "check_references",
    "list_partitions",
    "place",
    "repartition",
    "upsert",
]
