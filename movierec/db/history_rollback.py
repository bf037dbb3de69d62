"""The rollback engine behind :func:`movierec.db.history.rollback`: set-based statements over
temp tables, one per step and table, joined on the key (partition column first).

Why set-based: reverting change by change made PostgreSQL look up each row through a
``jsonb_populate_record`` lateral join it could not prune, so every changed row cost a probe
of every partition, and a scan of every remote one (issue 24: 2,863 changes took 17
minutes). Here each table's planned rows become a typed temp table (its key columns as real
columns), and every statement joins it to the table on those columns, partition column
first. How partitions are pruned:

* A table with foreign partitions (shards): every statement also filters ``<partition
  column> = ANY(<the plan's values of it>)``, planned for those values, so PostgreSQL skips
  the partitions that hold none of them and postgres_fdw sends the filter to each shard
  that remains (one remote query per statement, answered from the shard's index), and the
  join is a hash join (a nested loop would ask the shard once per row).
* Local partitions: the same filter when the plan names at most :data:`FEW_KEYS` values;
  past that, none, and the planner's choice of join: a nested loop probes each row's key,
  PostgreSQL prunes to the one partition that can hold it at each probe (run-time
  pruning), and a nested loop over a long value list would search each index for the whole
  list once per row.

Locks: the rows a rollback will delete or update are locked (``FOR UPDATE``, in key order)
before their state is checked, and nothing else: no table locks, so the site keeps writing
other rows. One exception, precisely: on a foreign partition the rows locked are those of
the partition-key values concerned (for ratings: every rating of each user whose ratings the
rollback changes), because postgres_fdw ships the partition-key filter to the shard but not
the join with the local key list. A row the rollback re-inserts does not exist and cannot be
locked: a concurrent insert of the same key makes the re-insert fail, and the rollback is
refused as a whole. A dry run takes no row locks at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from movierec.errors import MovierecError

ROW_OPS = ("INSERT", "UPDATE", "DELETE")
FEW_KEYS = 64  # partition-key values a statement on local partitions names for plan-time pruning
# Temp tables of a rollback's transaction: the window's rows, the plan (one row per key).
WINDOW = "movierec_rb_window"
PLAN = "movierec_rb_plan"


class RollbackConflict(MovierecError):
    """A rollback was refused: reverting would overwrite or destroy what the history does not
    hold (a row changed outside it, a bulk load, a TRUNCATE, a row outside ``table``).
    Nothing was changed."""


@dataclass(frozen=True)
class TablePlan:
    """What the statements for one table need: its typed plan and its columns."""

    table: str
    temp: str  # the temp table of its planned rows, with the key columns typed
    key: tuple[str, ...]
    partition_column: str | None
    remote: bool  # some of its partitions are foreign tables (on a shard)
    columns: tuple[str, ...]  # the columns a statement may write (not generated ones)
    private: dict[str, str]  # private column -> the SQL expression a re-inserted row gets
    rank: int  # how deep under the tables it refers to (parents are put back first)


# -- the window ---------------------------------------------------------------------------


def collect_window(session: Session, window: dict[str, Any]) -> None:
    """Copy the window's history rows into a temp table, each with whether its signature
    checks (``authentic``)."""
    conditions = ["h.id <= :through_id"]
    if window["to_id"] is not None:
        conditions.append("h.id > :to_id")
    if window["to_time"] is not None:
        conditions.append("h.changed_at > :to_time")
    if window["table"] is not None:
        conditions.append("h.table_name IN (:table, '*')")
    _drop(session, WINDOW)
    _execute(
        session,
        sql.SQL(
            "CREATE TEMP TABLE movierec_rb_window ON COMMIT DROP AS SELECT h.*, "
            "h.signature IS NOT DISTINCT FROM movierec_history_signature(h, "
            "(SELECT key FROM history_secret)) AS authentic "
            "FROM change_history h WHERE {}"
        ).format(sql.SQL(" AND ").join(sql.SQL(c) for c in conditions)),
        window,
    )
    session.execute(text("ANALYZE movierec_rb_window"))


def window_survey(session: Session, preview: int) -> tuple[list, list, int, int | None]:
    """The window's authentic rows per (table, op), the newest ``preview`` of them, and how
    many rows are not authentic (and the first of those)."""
    counts = session.execute(
        text(
            "SELECT table_name, op, count(*) FROM movierec_rb_window WHERE authentic "
            "GROUP BY table_name, op ORDER BY table_name, op"
        )
    ).all()
    newest = (
        session.execute(
            text(
                "SELECT * FROM movierec_rb_window WHERE authentic ORDER BY id DESC LIMIT :preview"
            ),
            {"preview": preview},
        )
        .mappings()
        .all()
    )
    ignored, first_ignored = session.execute(
        text("SELECT count(*), min(id) FROM movierec_rb_window WHERE NOT authentic")
    ).one()
    return counts, newest, ignored, first_ignored


def refuse_unsigned_past(session: Session) -> None:
    """Refuse a window that reaches back to rows written before the history was signed
    (migration 0010): nothing tells the genuine ones from forgeries."""
    first, signed_from = session.execute(
        text("SELECT (SELECT min(id) FROM movierec_rb_window), signed_from FROM history_secret")
    ).one()
    if first is not None and first < signed_from:
        raise RollbackConflict(
            f"changes before {signed_from} were recorded before the history was signed "
            f"(migration 0010) and cannot be authenticated; roll back to change "
            f"{signed_from - 1} or later, or restore a backup; nothing was changed"
        )


def refuse_barriers(session: Session) -> None:
    """Refuse a window with a (genuine) bulk load or TRUNCATE in it."""
    barrier = session.execute(
        text(
            "SELECT h.id, h.op, h.table_name, s.description, s.created_at "
            "FROM movierec_rb_window h LEFT JOIN change_sets s ON s.id = h.change_set "
            "WHERE h.authentic AND h.op IN ('BULK', 'TRUNCATE') ORDER BY h.id LIMIT 1"
        )
    ).first()
    if barrier is None:
        return
    change_id, op, table_name, description, created_at = barrier
    what = (
        f"bulk load {description!r} of {table_name} ({created_at:%Y-%m-%d %H:%M:%S %Z})"
        if op == "BULK"
        else f"TRUNCATE of {table_name}"
    )
    raise RollbackConflict(
        f"change {change_id} is a {what}, which has no per-row history; roll back to a point "
        "after it, or restore a backup from before it; nothing was changed"
    )


# -- the plan -----------------------------------------------------------------------------


def make_plan(session: Session) -> list[TablePlan]:
    """One step per row the window's authentic changes touched, from its state now
    (``expected``: the new_row of its last change, NULL after a DELETE) back to its state
    before the window (``target``: the old_row of its first change, NULL before an INSERT);
    then a typed temp table per table. Replaying changes one by one in reverse would not do:
    PostgreSQL records a cascaded delete of child rows after the parent's delete."""
    _drop(session, PLAN)
    session.execute(
        text(
            """
            CREATE TEMP TABLE movierec_rb_plan ON COMMIT DROP AS
            WITH keyed AS (
                SELECT h.table_name, h.row_key,
                       row_number() OVER k AS n,
                       first_value(h.id) OVER k AS first_id,
                       first_value(h.op) OVER k AS first_op,
                       first_value(h.old_row) OVER k AS target,
                       last_value(h.id) OVER k AS last_id,
                       last_value(h.op) OVER k AS last_op,
                       last_value(h.new_row) OVER k AS expected
                  FROM movierec_rb_window h
                 WHERE h.authentic AND h.op IN ('INSERT', 'UPDATE', 'DELETE')
                WINDOW k AS (PARTITION BY h.table_name, h.row_key ORDER BY h.id
                             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            )
            SELECT table_name, row_key, first_id, last_id, target, expected,
                   CASE WHEN first_op = 'INSERT' AND last_op <> 'DELETE' THEN 'DELETE'
                        WHEN first_op <> 'INSERT' AND last_op = 'DELETE' THEN 'INSERT'
                        WHEN first_op <> 'INSERT' THEN 'UPDATE'
                        ELSE 'NONE' END AS step
              FROM keyed WHERE n = 1
            """
        )
    )
    tables = session.execute(
        text("SELECT table_name, min(row_key::text) FROM movierec_rb_plan GROUP BY 1 ORDER BY 1")
    ).all()
    plans = []
    for number, (name, sample_key) in enumerate(tables):
        plan = _table_plan(session, name, f"movierec_rb_t{number}", sample_key)
        _typed_plan(session, plan)
        plans.append(plan)
    return plans


def _table_plan(session: Session, table: str, temp: str, sample_key: str) -> TablePlan:
    keys = session.execute(text("SELECT jsonb_object_keys(CAST(:k AS jsonb))"), {"k": sample_key})
    key = tuple(keys.scalars())
    columns = (
        session.execute(
            text(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(quote_ident(:t)) "
                "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
            ),
            {"t": table},
        )
        .scalars()
        .all()
    )
    partition_column = session.scalar(
        text(
            "SELECT a.attname FROM pg_partitioned_table p JOIN pg_attribute a "
            "ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = to_regclass(quote_ident(:t))"
        ),
        {"t": table},
    )
    private = session.execute(
        text(
            "SELECT c, r FROM history_tables, unnest(private_columns, private_restore) AS u(c, r) "
            "WHERE table_name = :t"
        ),
        {"t": table},
    ).all()
    rank = session.scalar(text("SELECT movierec_history_table_rank(:t)"), {"t": table})
    remote = session.scalar(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_partition_tree(to_regclass(quote_ident(:t))) p "
            "JOIN pg_class c ON c.oid = p.relid WHERE c.relkind = 'f')"
        ),
        {"t": table},
    )
    return TablePlan(
        table=table,
        temp=temp,
        key=key,
        partition_column=partition_column,
        remote=bool(remote),
        columns=tuple(columns),
        private=dict(private),
        rank=rank or 0,
    )


def _typed_plan(session: Session, plan: TablePlan) -> None:
    _drop(session, plan.temp)
    _execute(
        session,
        sql.SQL(
            "CREATE TEMP TABLE {temp} ON COMMIT DROP AS "
            "SELECT p.step, p.first_id, p.last_id, p.row_key, p.target, p.expected, {keys} "
            "FROM {plan} p CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, p.row_key) k "
            "WHERE p.table_name = :table"
        ).format(
            temp=sql.Identifier(plan.temp),
            keys=sql.SQL(", ").join(sql.Identifier("k", c) for c in plan.key),
            plan=sql.Identifier(PLAN),
            table=sql.Identifier(plan.table),
        ),
        {"table": plan.table},
    )
    # An update whose target and last state differ only in private columns changes nothing.
    _execute(
        session,
        sql.SQL(
            "UPDATE {temp} SET step = 'NONE' WHERE step = 'UPDATE' AND "
            "to_jsonb(jsonb_populate_record(NULL::{table}, target)) - CAST(:private AS text[]) "
            "= to_jsonb(jsonb_populate_record(NULL::{table}, expected)) - CAST(:private AS text[])"
        ).format(temp=sql.Identifier(plan.temp), table=sql.Identifier(plan.table)),
        {"private": list(plan.private)},
    )
    _execute(session, sql.SQL("ANALYZE {}").format(sql.Identifier(plan.temp)))


# -- locks and conflicts ------------------------------------------------------------------


def lock_rows(session: Session, plans: Sequence[TablePlan]) -> None:
    """Lock the rows the plan deletes or updates, in key order, table by table."""
    for plan in plans:
        steps = ("DELETE", "UPDATE")
        where, params = _pruned(session, plan, steps)
        _execute(
            session,
            sql.SQL(
                "SELECT 1 FROM {table} t JOIN {temp} k ON {match} "
                "WHERE k.step IN ('DELETE', 'UPDATE'){where} ORDER BY {order} FOR UPDATE OF t"
            ).format(
                where=where,
                order=sql.SQL(", ").join(sql.Identifier("t", c) for c in plan.key),
                **_names(plan),
            ),
            params,
        )


def check_conflicts(session: Session, plans: Sequence[TablePlan], through_id: int) -> None:
    """Raise :class:`RollbackConflict` for the first planned row that is not as the last
    change in the window left it (compared through the row type, so the time zone an image
    was written in does not matter; private columns are not compared)."""
    found = []
    for plan in plans:
        where, params = _pruned(session, plan, None)
        row = _execute(
            session,
            sql.SQL(
                "SELECT k.last_id, k.row_key, count(*) OVER () FROM {temp} k "
                "LEFT JOIN {table} t ON {match}{where} "
                "WHERE CASE WHEN t.{first} IS NULL THEN NULL "
                "           ELSE to_jsonb(t) - CAST(:private AS text[]) END "
                "IS DISTINCT FROM CASE WHEN k.expected IS NULL THEN NULL "
                "    ELSE to_jsonb(jsonb_populate_record(NULL::{table}, k.expected)) "
                "         - CAST(:private AS text[]) END "
                "ORDER BY k.last_id LIMIT 1"
            ).format(where=where, first=sql.Identifier(plan.key[0]), **_names(plan)),
            {**params, "private": list(plan.private)},
        ).first()
        if row is not None:
            found.append((row[0], plan.table, row[1], row[2]))
    if not found:
        return
    change_id, table, key, _ = min(found)
    more = sum(n for _, _, _, n in found) - 1
    later = session.scalar(
        text(
            "SELECT min(id) FROM change_history WHERE id > :through AND table_name = :t "
            "AND row_key = CAST(:k AS jsonb)"
        ),
        {"through": through_id, "t": table, "k": _compact(key)},
    )
    why = (
        f"changed by change {later}, after the rollback's window"
        if later is not None
        else "changed outside the recorded history"
    )
    suffix = f" (and {more} more rows)" if more else ""
    raise RollbackConflict(
        f"{table} {_compact(key)} is no longer as change {change_id} left it: it was "
        f"{why}{suffix}; nothing was changed"
    )


# -- the undo -----------------------------------------------------------------------------


def undo(session: Session, plans: Sequence[TablePlan]) -> int:
    """Run the plan: deletes (children's tables first), updates, inserts (parents' tables
    first); one statement per step and table, each of which must touch exactly the rows
    planned. Returns the rows restored. Raises :class:`RollbackConflict` (the caller's
    savepoint undoes what ran)."""
    order = [(plan, "DELETE") for plan in sorted(plans, key=lambda p: -p.rank)]
    order += [(plan, "UPDATE") for plan in plans]
    order += [(plan, "INSERT") for plan in sorted(plans, key=lambda p: p.rank)]
    done = 0
    for plan, step in order:
        planned = _execute(
            session,
            sql.SQL("SELECT count(*) FROM {} WHERE step = :step").format(sql.Identifier(plan.temp)),
            {"step": step},
        ).scalar_one()
        if not planned:
            continue
        statement, params = _undo_statement(session, plan, step)
        if statement is None:
            continue
        what = f"{plan.table} ({step.lower()} of {planned} rows)"
        try:
            count = _execute(session, statement, params).rowcount
        except DBAPIError as exc:
            diag = getattr(exc.orig, "diag", None)
            message = diag.message_primary if diag else str(exc.orig)
            detail = f" ({diag.message_detail})" if diag and diag.message_detail else ""
            raise RollbackConflict(
                f"cannot restore {what}: {message}{detail}; nothing was changed"
            ) from exc
        if count != planned:
            raise RollbackConflict(
                f"cannot restore {what}: only {count} of the rows were there; nothing was changed"
            )
        done += count
    return done


def _undo_statement(
    session: Session, plan: TablePlan, step: str
) -> tuple[sql.Composable | None, dict[str, Any]]:
    names = _names(plan)
    if step == "INSERT":
        values = [
            sql.SQL(plan.private[c]) if c in plan.private else sql.Identifier("o", c)
            for c in plan.columns
        ]
        statement = sql.SQL(
            "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {values} "
            "FROM {temp} k CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, k.target) o "
            "WHERE k.step = 'INSERT' ORDER BY k.last_id"
        ).format(
            columns=sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns),
            values=sql.SQL(", ").join(values),
            **names,
        )
        return statement, {}
    where, params = _pruned(session, plan, (step,))
    if step == "DELETE":
        statement = sql.SQL(
            "DELETE FROM {table} t USING {temp} k WHERE k.step = 'DELETE' AND {match}{where}"
        ).format(where=where, **names)
        return statement, params
    settable = [c for c in plan.columns if c not in plan.key and c not in plan.private]
    if not settable:
        return None, {}  # a table of key columns only: nothing to set back
    statement = sql.SQL(
        "UPDATE {table} t SET {sets} FROM {temp} k "
        "CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, k.target) o "
        "WHERE k.step = 'UPDATE' AND {match}{where}"
    ).format(
        sets=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("o", c)) for c in settable
        ),
        where=where,
        **names,
    )
    return statement, params


def check_collateral(session: Session, change_set: int) -> None:
    """Raise if restoring changed a row outside the plan (a cascade past ``table``)."""
    stray = session.execute(
        text(
            "SELECT table_name, row_key FROM change_history "
            "WHERE change_set = :change_set AND changed_at = now() "
            "AND op IN ('INSERT', 'UPDATE', 'DELETE') "
            "EXCEPT SELECT table_name, row_key FROM movierec_rb_plan LIMIT 1"
        ),
        {"change_set": change_set},
    ).first()
    if stray is not None:
        table_name, key = stray
        raise RollbackConflict(
            f"reverting would also change {table_name} {_compact(key)}, which is outside the "
            "rollback (a foreign key cascade); roll back every table; nothing was changed"
        )


# -- helpers ------------------------------------------------------------------------------


def _names(plan: TablePlan) -> dict[str, sql.Composable]:
    """The parts every statement of a table names: ``{table} t``, ``{temp} k`` and
    ``{match}``, the join of the two on the key."""
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = k.{0}").format(sql.Identifier(c)) for c in plan.key
    )
    return {"table": sql.Identifier(plan.table), "temp": sql.Identifier(plan.temp), "match": match}


def _pruned(
    session: Session, plan: TablePlan, steps: Sequence[str] | None
) -> tuple[sql.Composable, dict[str, Any]]:
    """`` AND t.<partition column> = ANY(:pruned)`` with the plan's values of that column
    (of ``steps``' rows, all rows when None), and the join method to go with it (see the
    module docstring); nothing for a table that is not partitioned."""
    _join_method(session, plan)
    if plan.partition_column is None:
        return sql.SQL(""), {}
    column = sql.Identifier(plan.partition_column)
    condition = sql.SQL("") if steps is None else sql.SQL(" WHERE step = ANY(:steps)")
    values = _execute(
        session,
        sql.SQL("SELECT array_agg(DISTINCT {}) FROM {}{}").format(
            column, sql.Identifier(plan.temp), condition
        ),
        {"steps": list(steps or ())},
    ).scalar_one()
    if values is None or (not plan.remote and len(values) > FEW_KEYS):
        return sql.SQL(""), {}
    return sql.SQL(" AND t.{} = ANY(:pruned)").format(column), {"pruned": values}


def _join_method(session: Session, plan: TablePlan) -> None:
    """Hash joins for a table with foreign partitions, the planner's choice otherwise."""
    nested_loops = "off" if plan.remote else "on"
    session.execute(
        text("SELECT set_config('enable_nestloop', :value, true)"), {"value": nested_loops}
    )


def _execute(session: Session, statement: sql.Composable, params: dict[str, Any] | None = None):
    driver = session.connection().connection.driver_connection
    return session.execute(text(statement.as_string(driver)), params or {})


def _drop(session: Session, name: str) -> None:
    _execute(session, sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
