"""The dashboard's pages and actions: one page of panels, and POST actions that each go
through the CLI's library call, the site's CSRF check (every session POST) and an audit row.

A history rollback takes two clicks: the first runs the dry run and shows what it would
revert, with a form carrying the window it showed (``through_id``); the second applies that
window, as ``movierec db history rollback`` does after its confirmation. Refusals (a
conflict, an unknown table, nothing to revert) are flashed and audited, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from movierec.db.history import ROW_OPS
from movierec.db.online_eval import describe
from movierec.errors import MovierecError
from movierec.redact import redact
from movierec.web.admin import admin_required
from movierec.web.dashboard import (
    audit,
    cluster_panel,
    database_panel,
    models_panel,
    online_panel,
)
from movierec.wire import dashboard as fields
from movierec.wire.params import read_args

bp = Blueprint("dashboard", __name__, url_prefix="/admin/dashboard")
bp.add_app_template_filter(describe, "online_summary")


@bp.app_template_filter("human_bytes")
def human_bytes(n: int | None) -> str:
    """``1.2 GB``: sizes for people (binary multiples, as PostgreSQL's pg_size_pretty)."""
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # not reached


def _panel(gather: Callable[[], Any]) -> tuple[Any, str | None]:
    """A panel's figures, or why it cannot show them: one panel failing leaves the page."""
    try:
        return gather(), None
    except MovierecError as exc:
        return None, redact(str(exc))


@bp.get("")
@admin_required
def index() -> str:
    panels = {
        name: _panel(module.gather)
        for name, module in (
            ("cluster", cluster_panel),
            ("database", database_panel),
            ("models", models_panel),
            ("online", online_panel),
        )
    }
    recent, recent_error = _panel(audit.recent)
    return render_template(
        "dashboard/index.html", panels=panels, audit=recent, audit_error=recent_error
    )


@bp.post("/history/rollback/preview")
@admin_required
def rollback_preview() -> str | Response:
    """The first click: the dry run, and the form that applies exactly its window."""
    args = read_args(fields.PREVIEW, request.form)
    table = args["table"] or None
    target = f"change {args['to_id']}" + (f" ({table})" if table else "")
    try:
        report = database_panel.dry_run(args["to_id"], table)
    except MovierecError as exc:
        return _refused("history rollback dry run", target, exc)
    audit.write(
        "history rollback dry run", target, "dry run",
        changes=report.changes, through_id=report.through_id,
    )  # fmt: skip
    revertible = any(op in ROW_OPS for _, op, _ in report.counts)
    return render_template("dashboard/rollback.html", report=report, revertible=revertible)


@bp.post("/history/rollback/apply")
@admin_required
def rollback_apply() -> Response:
    """The second click: revert the window the dry run showed."""
    args = read_args(fields.APPLY, request.form)
    table = args["table"] or None
    target = f"change {args['to_id']}" + (f" ({table})" if table else "")
    try:
        report = database_panel.apply(args["to_id"], args["through_id"], table)
    except MovierecError as exc:
        return _refused("history rollback", target, exc)
    audit.write(
        "history rollback", target, "done", rows=report.rows, change_set=report.change_set,
        through_id=args["through_id"], undo_to=report.undo_to,
    )  # fmt: skip
    flash(
        f"Restored {report.rows} rows as change set {report.change_set}; to undo it, roll back "
        f"to change {report.undo_to}.",
        "info",
    )
    return redirect(url_for("dashboard.index", _anchor="database"))


@bp.post("/models/rollback")
@admin_required
def model_rollback() -> Response:
    """Serve the previously live model of a kind again (``movierec model rollback``)."""
    kind = read_args(fields.MODEL_ROLLBACK, request.form)["kind"]
    try:
        version = models_panel.roll_back(kind)
    except MovierecError as exc:
        return _refused("model rollback", kind, exc)
    audit.write("model rollback", kind, "done", live=version)
    flash(f"Live {kind} model: {version} (rolled back).", "info")
    return redirect(url_for("dashboard.index", _anchor="models"))


def _refused(action: str, target: str, exc: MovierecError) -> Response:
    reason = redact(str(exc))
    audit.write(action, target, f"refused: {reason}")
    flash(f"{action.capitalize()} refused: {reason}", "error")
    return redirect(url_for("dashboard.index"))
