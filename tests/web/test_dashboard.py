"""The operator's dashboard (movierec.web.dashboard) on a real PostgreSQL: admins only, every
panel from real data, a history rollback in two CSRF-checked clicks, a model rollback, and an
audit row for each action."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from support.browser import artifacts_dir

from movierec.ai.artifact import write_artifact
from movierec.ai.registry import live_version, promote
from movierec.db import Rating, User
from movierec.db.history import set_actor
from movierec.db.schema import AdminAudit

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
THROUGH = re.compile(r'name="through_id" value="(\d+)"')


@pytest.fixture
def admin(database, seed):
    with database.session() as s:
        s.get_one(User, seed.ann).is_admin = True
    return seed


@pytest.fixture
def dashboard(make_app, settings, admin, helpers):
    """ann (an admin) logged in on an app with CSRF on and the owner's URL configured."""
    app = make_app(WTF_CSRF_ENABLED=True, admin_database_url=settings.database_url)
    client = app.test_client()
    helpers.log_in(client, "ann", token=helpers.csrf_token(client, "/auth/login"))
    return client


@pytest.fixture
def models(settings):
    """Two ranking versions (the newer live, the older before it) and a rating version."""
    made = []
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    for i, (kind, algo, metric) in enumerate(
        [("ranking", "ease", 0.11), ("ranking", "als", 0.13), ("rating", "svd", 0.91)]
    ):
        meta = {"kind": kind, "algorithm": algo, "n_users": 2, "n_movies": 5, "n_ratings": 5}
        meta |= {"top_n": {"ndcg": metric}} if kind == "ranking" else {"metrics": {"rmse": metric}}
        info = write_artifact(settings.model_dir, algo, {}, meta, when=start + timedelta(hours=i))
        promote(settings.model_dir, info.version)
        made.append(info.version)
    return made


def audit_rows(database) -> list[tuple[str, str, str]]:
    with database.session() as s:
        rows = s.execute(
            select(AdminAudit.action, AdminAudit.target, AdminAudit.outcome).order_by(AdminAudit.id)
        )
        return [tuple(r) for r in rows]


def test_only_admins_see_the_dashboard(make_app, admin, helpers):
    client = make_app().test_client()
    assert client.get("/admin/dashboard").status_code in (302, 401)
    helpers.log_in(client, "bob")
    assert client.get("/admin/dashboard").status_code == 403
    answer = client.post("/admin/dashboard/models/rollback", data={"kind": "ranking"})
    assert answer.status_code == 403


def test_every_panel_shows_real_figures(dashboard, database, seed, ai, models):
    with database.session() as s:
        s.execute(
            text(
                "INSERT INTO impressions (user_id, model_version, movie_ids) "
                "VALUES (:u, :v, ARRAY[5, 3]::bigint[])"
            ),
            {"u": seed.bob, "v": models[1]},
        )
    dashboard.get("/for-you")  # a request for the worker's own counters
    page = dashboard.get("/admin/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # Cluster: this instance from its own counters, the (stand-in) recommender answering.
    assert re.search(r"this instance.*?<td>ok</td>", html, re.S)
    assert re.search(r"ai-1.*?<td>ok</td>", html, re.S)
    # Database: the primary, the partitions and where they live, sizes, the history.
    assert "primary" in html and "ratings_p0" in html and "local" in html
    assert "Database: " in html and " MB" in html
    assert re.search(r"<td>ratings</td><td>INSERT</td>", html)
    # Models: versions, the live ones, the rollback, the charts (inline SVG, no script).
    assert f"{models[1]} live; a rollback returns to" in html
    assert html.count("<svg") >= 2 and "<script" not in html and "NDCG@10 of ranking" in html
    # Online: the recorded list, scored.
    assert f"<td>{models[1]}</td><td>1</td>" in html


def test_a_history_rollback_is_a_dry_run_then_applied_with_csrf(dashboard, database, seed, helpers):
    with database.session() as s:
        set_actor(s, "admin:test")
        s.get_one(Rating, (seed.ann, seed.heat)).rating = 1.0
    with database.session() as s:
        last = s.execute(text("SELECT max(id) FROM change_history")).scalar()
    token = helpers.csrf_token(dashboard, "/admin/dashboard")

    preview = dashboard.post(
        "/admin/dashboard/history/rollback/preview", data={"to_id": last - 1, "csrf_token": token}
    )
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    assert "Revert these 1 changes" in html
    through = THROUGH.search(html).group(1)
    with database.session() as s:  # a dry run changes nothing
        assert s.get_one(Rating, (seed.ann, seed.heat)).rating == 1.0

    form = {"to_id": last - 1, "through_id": through}
    assert dashboard.post("/admin/dashboard/history/rollback/apply", data=form).status_code == 400
    with database.session() as s:
        assert s.get_one(Rating, (seed.ann, seed.heat)).rating == 1.0

    applied = dashboard.post(
        "/admin/dashboard/history/rollback/apply", data={**form, "csrf_token": token}
    )
    assert applied.status_code == 302
    with database.session() as s:
        assert s.get_one(Rating, (seed.ann, seed.heat)).rating == 4.0
        actor = s.execute(text("SELECT actor FROM change_history ORDER BY id DESC LIMIT 1"))
        assert actor.scalar() == "admin:web:ann"
    assert audit_rows(database) == [
        ("history rollback dry run", f"change {last - 1}", "dry run"),
        ("history rollback", f"change {last - 1}", "done"),
    ]
    assert "Restored 1 rows" in dashboard.get("/admin/dashboard").get_data(as_text=True)


def test_a_model_rollback_serves_the_version_before(dashboard, database, settings, models, helpers):
    token = helpers.csrf_token(dashboard, "/admin/dashboard")
    answer = dashboard.post(
        "/admin/dashboard/models/rollback", data={"kind": "ranking", "csrf_token": token}
    )
    assert answer.status_code == 302
    assert live_version(settings.model_dir, "ranking") == models[0]
    again = dashboard.post(
        "/admin/dashboard/models/rollback", data={"kind": "ranking", "csrf_token": token}
    )
    assert again.status_code == 302  # nothing earlier: refused, said, audited
    assert live_version(settings.model_dir, "ranking") == models[0]
    assert [row[2][:8] for row in audit_rows(database)] == ["done", "refused:"]
    bad = dashboard.post(
        "/admin/dashboard/models/rollback", data={"kind": "nonsense", "csrf_token": token}
    )
    assert bad.status_code == 400 and "unknown kind" in bad.get_data(as_text=True)


def test_without_the_owners_url_the_site_keeps_its_own_role(make_app, admin, helpers, database):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    helpers.log_in(client, "ann", token=helpers.csrf_token(client, "/auth/login"))
    html = client.get("/admin/dashboard").get_data(as_text=True)
    assert "set admin_database_url" in html
    token = helpers.csrf_token(client, "/admin/dashboard")
    answer = client.post(
        "/admin/dashboard/history/rollback/preview", data={"to_id": 1, "csrf_token": token}
    )
    assert answer.status_code == 302
    ((action, _, outcome),) = audit_rows(database)
    assert action == "history rollback dry run" and outcome.startswith("refused: set admin_")


def test_in_a_browser_two_clicks_roll_back_a_change(
    page, live_site, make_app, settings, database, admin, models, helpers
):
    """Headless Chromium against the site on a real socket: log in, look, dry run, apply.
    The screenshot goes to docs/screenshots/ with MOVIEREC_UPDATE_SCREENSHOTS=1."""
    with database.session() as s:
        for user, version, movies in [
            (admin.ann, models[0], [3, 5]), (admin.bob, models[1], [4, 3]),
        ]:  # fmt: skip
            s.execute(
                text("INSERT INTO impressions (user_id, model_version, movie_ids, shown_at) "
                     "VALUES (:u, :v, CAST(:m AS bigint[]), now() - interval '1 hour')"),
                {"u": user, "v": version, "m": movies},
            )  # fmt: skip
        s.add(Rating(user_id=admin.ann, movie_id=admin.toy, rating=5.0))  # a hit for ease
    with database.session() as s:
        set_actor(s, f"user:{admin.bob}")
        s.get_one(Rating, (admin.bob, admin.alien)).rating = 0.5
    live_site.app = make_app(
        WTF_CSRF_ENABLED=True, TESTING=False, admin_database_url=settings.database_url
    )
    try:
        page.goto(f"{live_site.url}/auth/login")
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", helpers.password)
        page.click("main button[type=submit]:has-text('Log in')")
        page.goto(f"{live_site.url}/admin/dashboard")
        for panel in ("Cluster", "Database", "Models", "Online evaluation"):
            assert page.locator(f"section.panel h2:has-text('{panel}')").is_visible()
        assert page.locator("#models svg").count() == 2
        save_dashboard_screenshot(page)

        page.locator("#database tbody tr", has_text="UPDATE").filter(has_text="ratings").locator(
            "button"
        ).click()
        # Each click posts a form: wait for the next page, not the one it leaves.
        page.locator("main", has_text="Revert these 1 changes").wait_for(timeout=10_000)
        page.click("button:has-text('Revert these')")
        page.locator("main", has_text="Restored 1 rows").wait_for(timeout=10_000)
    finally:
        live_site.app = None
    with database.session() as s:
        assert s.get_one(Rating, (admin.bob, admin.alien)).rating == 4.0


def save_dashboard_screenshot(page) -> None:
    """docs/screenshots/dashboard.png on request (MOVIEREC_UPDATE_SCREENSHOTS=1, as the login
    pages' test does), else with the other test artifacts: a test run leaves the tree clean."""
    update = os.environ.get("MOVIEREC_UPDATE_SCREENSHOTS") == "1"
    target = DOCS_SCREENSHOTS if update else artifacts_dir() / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(target / "dashboard.png"), full_page=True)
