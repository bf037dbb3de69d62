"""Catching a partition's copy up with the writes made while it is copied: the change log an
online move (:mod:`~movierec.db.partitions.placement`) keeps, replays and checks.

While a partition ``p`` is copied into ``p_new``, an AFTER ROW trigger on ``p`` writes the
key of every row that an INSERT, UPDATE or DELETE touches (old and new key when an UPDATE
changes it) into ``movierec_move_<p>``, in the writer's own transaction. Replaying a batch
of logged keys makes ``p_new`` equal to ``p`` on exactly those keys (delete them from
``p_new``, copy their current rows from ``p``) and marks the entries applied in the same
transaction, so a key changed after its replay is logged again and replayed again: the copy
converges on the partition however the writes interleave with the batches.

The trigger is ENABLE ALWAYS (it fires under ``session_replication_role = replica`` too:
bulk loads) and its function is SECURITY DEFINER, owned by whoever moves the partition, with
a fixed search_path: the site's roles get no privilege on the log.

Checking the copy without stopping writes (:func:`compare`): in one REPEATABLE READ snapshot
``S``, the keys whose rows differ between ``p`` and ``p_new`` are listed; each must be a key
changed after ``S`` or still waiting for replay in ``S``, and exactly those keys (a few, if
the copy is right) are checked again, until the last check runs under the final lock, when
no writer is left and every one of them must match. Each entry records the writer's
transaction id, so "changed after ``S``" is ``NOT pg_visible_in_snapshot(move_xid, S)``,
whatever order the writers committed in. (The log's own columns are ``move_*``, apart from
the key's names.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from movierec.db.partitions.catalog import PartitionError, TableShape
from movierec.db.partitions.copying import row_hash, text_settings

REPLAY_BATCH = 1000  # log entries per replay transaction
KEY_BATCH = 50  # keys per statement that names keys (planning an OR of 200 costs 10x)
MAX_DIFFERENCES = 100_000  # more rows differing than this: the copy is wrong, not behind

Key = tuple


@dataclass(frozen=True)
class ChangeLog:
    """The change log of one online move of partition ``partition`` into ``target``."""

    partition: str
    target: str
    shape: TableShape

    @property
    def table(self) -> str:
        return f"movierec_move_{self.partition}"

    @property
    def function(self) -> str:
        return f"movierec_move_log_{self.partition}"

    @property
    def key(self) -> tuple[str, ...]:
        return self.shape.key

    def leftover_hint(self) -> str:
        return (
            f"DROP FUNCTION {self.function}() CASCADE; DROP TABLE {self.table}; "
            f"DROP TABLE {self.target} (or DROP FOREIGN TABLE)"
        )

    # -- starting and ending ----------------------------------------------------------------

    def exists(self, conn: psycopg.Connection) -> bool:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table,)).fetchone()
        return bool(found[0])

    def install(self, conn: psycopg.Connection, foreign: bool) -> None:
        """In the caller's transaction: the log table, its trigger function and the
        triggers (CREATE TRIGGER holds the partition against writes until the commit).
        Every write after the commit is logged; a TRUNCATE of the (local) partition is
        refused until the move ends."""
        types = {c.name: c.type for c in self.shape.columns}
        columns = sql.SQL(", ").join(
            sql.SQL("{} {} NOT NULL").format(sql.Identifier(k), sql.SQL(types[k])) for k in self.key
        )
        log = sql.Identifier(self.table)
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (move_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {}, "
                "move_xid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
                "move_applied boolean NOT NULL DEFAULT false)"
            ).format(log, columns)
        )
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (move_id) WHERE NOT move_applied").format(
                sql.Identifier(f"{self.table}_pending"), log
            )
        )
        names = _names(self.key)

        def values(row: str) -> sql.Composable:
            return sql.SQL(", ").join(
                sql.SQL("{}.{}").format(sql.SQL(row), sql.Identifier(k)) for k in self.key
            )

        body = sql.SQL(
            "BEGIN\n"
            "  IF TG_LEVEL = 'STATEMENT' THEN\n"
            "    RAISE EXCEPTION 'partition {part} is being moved: TRUNCATE it afterwards';\n"
            "  END IF;\n"
            "  IF TG_OP = 'DELETE'\n"
            "     OR (TG_OP = 'UPDATE' AND ({old}) IS DISTINCT FROM ({new})) THEN\n"
            "    INSERT INTO {log} ({names}) VALUES ({old});\n"
            "  END IF;\n"
            "  IF TG_OP <> 'DELETE' THEN\n"
            "    INSERT INTO {log} ({names}) VALUES ({new});\n"
            "  END IF;\n"
            "  RETURN NULL;\n"
            "END"
        ).format(
            log=log,
            names=names,
            old=values("OLD"),
            new=values("NEW"),
            part=sql.SQL(self.partition),  # a NAME_PATTERN-like partition name
        )
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                "SET search_path = public, pg_temp AS {}"
            ).format(sql.Identifier(self.function), sql.Literal(body.as_string(conn)))
        )
        conn.execute(
            sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(sql.Identifier(self.function))
        )
        part = sql.Identifier(self.partition)
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER movierec_move_log AFTER INSERT OR UPDATE OR DELETE ON {} "
                "FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(part, sql.Identifier(self.function))
        )
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER movierec_move_log").format(part))
        if not foreign:  # (foreign tables have no TRUNCATE triggers)
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER movierec_move_no_truncate BEFORE TRUNCATE ON {} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                ).format(part, sql.Identifier(self.function))
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER movierec_move_no_truncate").format(
                    part
                )
            )

    def remove(self, conn: psycopg.Connection) -> None:
        """In the caller's transaction: the function (and with it the trigger) and the
        log."""
        conn.execute(
            sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(sql.Identifier(self.function))
        )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(self.table)))

    # -- catching up ------------------------------------------------------------------------

    def behind(self, conn: psycopg.Connection) -> int:
        """Log entries not replayed yet (committed ones)."""
        query = sql.SQL("SELECT count(*) FROM {} WHERE NOT move_applied")
        return conn.execute(query.format(sql.Identifier(self.table))).fetchone()[0]

    def replay(self, conn: psycopg.Connection, limit: int = REPLAY_BATCH) -> int:
        """In the caller's transaction: replay up to ``limit`` pending entries, oldest
        first, and mark them applied. Returns how many there were."""
        pending = conn.execute(
            sql.SQL(
                "SELECT move_id, {} FROM {} WHERE NOT move_applied ORDER BY move_id LIMIT %s"
            ).format(_names(self.key), sql.Identifier(self.table)),
            (limit,),
        ).fetchall()
        if not pending:
            return 0
        self.mirror(conn, {tuple(row[1:]) for row in pending})
        conn.execute(
            sql.SQL("UPDATE {} SET move_applied = true WHERE move_id = ANY(%s)").format(
                sql.Identifier(self.table)
            ),
            ([row[0] for row in pending],),
        )
        return len(pending)

    def mirror(self, conn: psycopg.Connection, keys: set[Key]) -> None:
        """Make ``target`` equal to ``partition`` on ``keys``: delete them there, copy their
        current rows from the partition."""
        target, source = sql.Identifier(self.target), sql.Identifier(self.partition)
        columns = _names(self.shape.writable)
        for chunk in _chunks(sorted(keys), KEY_BATCH):
            where, params = self._matching(chunk)
            conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(target, where), params)
            conn.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {}").format(
                    target, columns, columns, source, where
                ),
                params,
            )

    # -- checking ---------------------------------------------------------------------------

    def compare(self, conn: psycopg.Connection, previous: Check | None) -> Check:
        """One check in its own REPEATABLE READ transaction (see the module docstring): of
        every row when ``previous`` is None, else of the keys ``previous`` left open."""
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            text_settings(conn)
            snapshot = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
            if previous is None:
                differing = self._all_differences(conn)
            else:
                differing = self.differences(conn, self.open_keys(conn, previous))
            pending = self._keys(conn, sql.SQL("NOT move_applied"))
        return Check(snapshot, pending | differing, len(differing))

    def open_keys(self, conn: psycopg.Connection, check: Check) -> set[Key]:
        """The keys a check leaves to the next one: those it found differing or pending,
        and every key logged by a transaction its snapshot did not see."""
        later = self._keys(
            conn, sql.SQL("NOT pg_visible_in_snapshot(move_xid, {}::pg_snapshot)").format(
                sql.Literal(check.snapshot)
            )
        )  # fmt: skip
        return check.open | later

    def differences(self, conn: psycopg.Connection, keys: Iterable[Key]) -> set[Key]:
        """The keys among ``keys`` whose rows differ between the partition and the copy (a
        row on one side only counts)."""
        found: set[Key] = set()
        for chunk in _chunks(sorted(keys), KEY_BATCH):
            where, params = self._matching(chunk)
            old = self._hashes(conn, self.partition, where, params)
            new = self._hashes(conn, self.target, where, params)
            found.update(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return found

    def _hashes(
        self, conn: psycopg.Connection, relation: str, where: sql.Composable, params: list
    ) -> dict[Key, int]:
        rows = conn.execute(
            sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
                _names(self.key), row_hash(self.shape), sql.Identifier(relation), where
            ),
            params,
        )
        return {tuple(row[:-1]): row[-1] for row in rows}

    def _all_differences(self, conn: psycopg.Connection) -> set[Key]:
        def side(relation: str) -> sql.Composed:
            return sql.SQL("SELECT {}, {} AS h FROM {}").format(
                _names(self.key), row_hash(self.shape), sql.Identifier(relation)
            )

        rows = conn.execute(
            sql.SQL(
                "SELECT {} FROM ({}) o FULL JOIN ({}) n USING ({}) "
                "WHERE o.h IS DISTINCT FROM n.h LIMIT %s"
            ).format(_names(self.key), side(self.partition), side(self.target), _names(self.key)),
            (MAX_DIFFERENCES + 1,),
        ).fetchall()
        if len(rows) > MAX_DIFFERENCES:
            raise PartitionError(
                f"the copy of {self.partition} differs from it in more than "
                f"{MAX_DIFFERENCES:,} rows; nothing was changed"
            )
        return {tuple(row) for row in rows}

    def _keys(self, conn: psycopg.Connection, condition: sql.Composable) -> set[Key]:
        rows = conn.execute(
            sql.SQL("SELECT DISTINCT {} FROM {} WHERE {}").format(
                _names(self.key), sql.Identifier(self.table), condition
            )
        )
        return {tuple(row) for row in rows}

    def _matching(self, keys: Sequence[Key]) -> tuple[sql.Composable, list]:
        """A condition true for the rows whose key is one of ``keys``: an OR of exact key
        matches, which postgres_fdw sends whole to a shard (whose planner uses the key's
        index for each), so neither side reads rows that are not asked for."""
        types = {c.name: c.type for c in self.shape.columns}
        one = sql.SQL("({})").format(
            sql.SQL(" AND ").join(
                sql.SQL("{} = %s::{}").format(sql.Identifier(k), sql.SQL(types[k]))
                for k in self.key
            )
        )
        params = [value for key in keys for value in key]
        return sql.SQL(" OR ").join([one] * len(keys)), params


@dataclass(frozen=True)
class Check:
    """What one check saw: its snapshot and the keys it could not close (differing, or
    waiting for replay, in that snapshot)."""

    snapshot: str
    open: set[Key] = field(default_factory=set)
    differing: int = 0


def _names(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
