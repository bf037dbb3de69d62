"""Partitioned tables: where each partition lives, moving partitions, writing rows.

:mod:`~movierec.db.partitions.catalog` says what is partitioned and how;
:mod:`~movierec.db.partitions.servers` adds shard servers and tablespaces;
:mod:`~movierec.db.partitions.listing` says where each partition is and how big;
:mod:`~movierec.db.partitions.placement` moves one, :mod:`~movierec.db.partitions.repartition`
rebuilds a table's, both through :mod:`~movierec.db.partitions.copying`;
:mod:`~movierec.db.partitions.references` finds rows whose parent is gone;
:mod:`~movierec.db.partitions.rows` writes rows without ``ON CONFLICT``.
"""

from movierec.db.partitions.catalog import (
    DEFAULT_TABLESPACE,
    Partition,
    PartitionError,
    Placement,
)
from movierec.db.partitions.listing import list_partitions
from movierec.db.partitions.placement import PlaceReport, place
from movierec.db.partitions.references import Orphans, check_references
from movierec.db.partitions.repartition import RepartitionReport, repartition
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
