"""Pages and API for admins (``users.is_admin``): everyone else gets 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from movierec.db.schema import Identity, Movie, Rating, User
from movierec.web.counts import Count, table_rows
from movierec.web.db import read_session
from movierec.wire import site

bp = Blueprint("admin", __name__)
USERS_PAGE = 100


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Log in first (401 JSON / login page), then be an admin (else 403)."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403, description="This page is for admins.")
        return view(*args, **kwargs)

    return wrapped


@bp.get("/admin")
@admin_required
def index() -> str:
    with read_session() as session:
        counts = {
            "users": table_rows(session, User),
            "admins": Count(session.scalar(select(func.count()).where(User.is_admin)), False),
            "movies": table_rows(session, Movie),
            "ratings": table_rows(session, Rating),
        }
    return render_template("admin/index.html", counts=counts)


@bp.get("/api/admin/users")
@admin_required
def users() -> Response:
    """One page of users, oldest first, with how each can log in."""
    page = site.ADMIN_USERS.read(request.args)["page"]
    providers = (
        select(func.array_agg(Identity.provider))
        .where(Identity.user_id == User.id)
        .scalar_subquery()
    )
    with read_session() as session:
        total = table_rows(session, User)
        rows = session.execute(
            select(User, providers)
            .order_by(User.id)
            .offset((page - 1) * USERS_PAGE)
            .limit(USERS_PAGE + 1)  # the next page's first row says there is one
        ).all()
    return jsonify(
        page=page,
        total=total.rows,
        total_estimated=total.estimated,
        has_next=len(rows) > USERS_PAGE,
        users=[
            {
                "id": user.id,
                "username": user.username,
                "display_name": user.display_name,
                "email": user.email,
                "is_admin": user.is_admin,
                "has_password": user.password_hash is not None,
                "providers": sorted(linked or []),
                "created_at": user.created_at.isoformat(),
            }
            for user, linked in rows[:USERS_PAGE]
        ],
    )
