"""The "for you" page: the recommender's picks for the logged-in user."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from movierec.web import cache, picks

bp = Blueprint("recommendations", __name__)
FOR_YOU = 24


@bp.get("/for-you")
@login_required
def for_you() -> str:
    found = picks.for_user(current_user.id, FOR_YOU)
    # Only cached picks (the same object on every hit) are worth keeping the HTML of.
    html = cache.movie_list_html(found.movies) if not found.limited else None
    return render_template("recommendations/for_you.html", picks=found, movies_html=html)
