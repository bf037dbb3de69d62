"""The whole product on one machine, for a first look (``movierec demo`` / ``make demo``).

Steps, each skipped when its result is already there (a second run starts in seconds):
a private PostgreSQL under ``state_dir/postgres``, the schema, sample data (synthetic, or a
MovieLens release), a demo account with a few ratings, the two trained models (the ranking
model for recommendations, the rating model for predicted stars), then one recommender
server and one web server: a local cluster of one of each (:mod:`movierec.cluster`), without a
director. :meth:`Demo.stop` stops all of it. ``movierec cluster up`` prepares the same data.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from argon2 import PasswordHasher
from sqlalchemy import func, select

from movierec.ai import train_model
from movierec.ai.registry import newest_of_kind
from movierec.cluster import control as cluster
from movierec.cluster.members import ClusterRecord
from movierec.cluster.spec import ClusterSpec
from movierec.config import Settings
from movierec.data import generate_catalogue, import_movielens
from movierec.db import Database, Movie, Preference, Rating, User

DEMO_USER = "demo"
DEMO_GENRES = ("Sci-Fi", "Adventure")
PICK_SAMPLE = 200_000

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    movies: int = 5000
    users: int = 3000
    ratings: int = 300_000
    movielens: Path | None = None
    seed: int = 0


@dataclass
class Demo:
    """What the demo started; ``stop()`` undoes it in reverse order."""

    settings: Settings
    record: ClusterRecord
    password: str

    @property
    def web_url(self) -> str:
        return self.record.url

    def stop(self) -> None:
        cluster.down(self.settings, lambda _text: None)


def prepare(options: DemoOptions, say: Say) -> cluster.Prepare:
    """The data steps, for :func:`movierec.cluster.up`: sample data, the demo account, a
    model. The demo password is kept in ``state_dir/demo_password``."""

    def run(database: Database, settings: Settings) -> None:
        load_data(database, options, say)
        ensure_demo_user(database, demo_password(settings))
        ensure_model(database, settings, say)

    return run


def demo_password(settings: Settings) -> str:
    return cluster.secret(settings.state_dir.resolve() / "demo_password", _password)


def load_data(database: Database, options: DemoOptions, say: Say) -> None:
    with database.session(readonly=True) as session:
        if session.scalar(select(func.count()).select_from(Movie)):
            say("data: already loaded")
            return
    if options.movielens:
        summary = import_movielens(database, options.movielens)
        say(f"data: imported {summary.ratings:,} ratings of {summary.movies:,} movies")
        return
    summary = generate_catalogue(
        database, options.movies, options.users, options.ratings, seed=options.seed
    )
    say(f"data: generated {summary.ratings:,} ratings of {summary.movies:,} movies")


def ensure_demo_user(database: Database, password: str) -> None:
    """A ``demo`` account who likes science fiction, with ratings so the model knows them."""
    with database.session() as session:
        if session.scalar(select(User.id).where(User.username == DEMO_USER)):
            return
        user = User(username=DEMO_USER, display_name="Demo User")
        user.password_hash = PasswordHasher().hash(password)
        session.add(user)
        session.flush()
        session.add(Preference(user_id=user.id, genres=list(DEMO_GENRES)))
        liked, other = _demo_picks(session)
        session.add_all(Rating(user_id=user.id, movie_id=m, rating=5.0) for m in liked)
        session.add_all(Rating(user_id=user.id, movie_id=m, rating=2.0) for m in other)


def _demo_picks(session) -> tuple[list[int], list[int]]:
    """Twelve popular movies of the demo genres to love, six popular others to dislike:
    popular among the first ``PICK_SAMPLE`` ratings read, not all of them. Ratings are
    partitioned by a hash of the user, so those are all the ratings of a random set of users;
    a count over every rating grows with the data (a group-by over 20M rows takes seconds,
    against the 5 s statement timeout)."""
    sample = select(Rating.movie_id).limit(PICK_SAMPLE).subquery()
    counts = select(sample.c.movie_id, func.count().label("n")).group_by(sample.c.movie_id)
    counts = counts.subquery()
    popular = (
        select(Movie.id, Movie.genres)
        .join(counts, counts.c.movie_id == Movie.id)
        .order_by(counts.c.n.desc())
        .limit(400)
    )
    liked, other = [], []
    for movie_id, genres in session.execute(popular):
        bucket = liked if set(genres) & set(DEMO_GENRES) else other
        bucket.append(movie_id)
    rng = np.random.default_rng(7)
    pick = lambda ids, n: [int(i) for i in rng.permutation(ids)[:n]]  # noqa: E731
    return pick(liked, 12), pick(other, 6)


def ensure_model(database: Database, settings: Settings, say: Say) -> None:
    """Both models the site needs, unless the model directory has them: the ranking model
    that picks recommendations (``auto``: the EASE + ALS blend at the demo's size) and the
    rating model (surprise SVD) that predicts the stars on movie pages."""
    for kind, algo, label in (
        ("ranking", "auto", "ranking model (recommendations)"),
        ("rating", None, "rating model, surprise SVD (predicted stars)"),
    ):
        if version := newest_of_kind(settings.model_dir, kind):
            say(f"model: {version}")
            continue
        say(f"model: training the {label} ...")
        report = train_model(
            database, settings.model_dir, algo=algo, ease_max_items=settings.ease_max_items,
            sansa_max_items=settings.sansa_max_items,
        )  # fmt: skip
        quality = ""
        if report.top_n is not None:
            quality = f", hold-out NDCG@10 {report.top_n.ndcg:.3f}"
            if report.baseline_top_n is not None:
                # The yardstick: most-rated movies first, on the same hold-out.
                quality += f" (popularity baseline {report.baseline_top_n.ndcg:.3f})"
        elif report.metrics:
            quality = f", hold-out RMSE {report.metrics.rmse:.3f}"
        say(f"model: {report.artifact.version}{quality}")


def start_demo(settings: Settings, options: DemoOptions, say: Say) -> Demo:
    """Bring everything up (one web server on ``web_port``, one recommender on ``ai_port``);
    on any failure, stop what was started and re-raise."""
    spec = ClusterSpec(web_ports=(settings.web_port,), ai_ports=(settings.ai_port,))
    record = cluster.up(settings, spec, say, prepare(options, say))
    return Demo(settings, record, demo_password(settings))


def _password() -> str:
    return secrets.token_urlsafe(12)
