"""The whole product on one machine, for a first look (``movierec demo`` / ``make demo``).

Steps, each skipped when its result is already there (a second run starts in seconds):
a private PostgreSQL under ``state_dir/postgres``, the schema, sample data (synthetic, or a
MovieLens release), a demo account with a few ratings, a trained model, then one recommender
server and one web server as child processes. :meth:`Demo.stop` stops all of it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from argon2 import PasswordHasher
from sqlalchemy import func, select

from movierec.ai import newest_version, train_model
from movierec.config import Settings
from movierec.data import generate_catalogue, import_movielens
from movierec.db import Database, LocalPostgres, Movie, Preference, Rating, User, upgrade
from movierec.processes import Child

DEMO_USER = "demo"
DEMO_GENRES = ("Sci-Fi", "Adventure")

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
    server: LocalPostgres
    password: str
    children: list[Child] = field(default_factory=list)

    @property
    def web_url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}/"

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.server.stop()


def _secret(path: Path, make: Callable[[], str]) -> str:
    """A value kept in ``path`` (mode 0600), made once: the demo's secret key and password."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def start_database(settings: Settings, say: Say) -> tuple[LocalPostgres, Settings]:
    """Start the private server, migrate it, and return settings that point at it."""
    state = settings.state_dir.resolve()
    say(f"PostgreSQL: starting a private server in {state / 'postgres'}")
    server = LocalPostgres(state / "postgres").start()
    url = server.create_database("movierec")
    upgrade(url)
    ai_url = f"http://{settings.ai_host}:{settings.ai_port}"
    return server, settings.replace(
        database_url=url,
        secret_key=settings.secret_key or _secret(state / "secret_key", secrets.token_hex),
        model_dir=settings.model_dir.resolve(),
        state_dir=state,
        ai_urls=(ai_url,),
    )


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
    """Twelve popular movies of the demo genres to love, six popular others to dislike."""
    counts = select(Rating.movie_id, func.count().label("n")).group_by(Rating.movie_id).subquery()
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
    if newest_version(settings.model_dir):
        say(f"model: {newest_version(settings.model_dir)}")
        return
    say("model: training (surprise SVD) ...")
    report = train_model(database, settings.model_dir)
    rmse = f", hold-out RMSE {report.metrics.rmse:.3f}" if report.metrics else ""
    say(f"model: {report.artifact.version}{rmse}")


def start_servers(demo: Demo, say: Say) -> None:
    s = demo.settings
    env = {
        "MOVIEREC_DATABASE_URL": s.database_url,
        "MOVIEREC_SECRET_KEY": s.secret_key,
        "MOVIEREC_MODEL_DIR": str(s.model_dir),
        "MOVIEREC_STATE_DIR": str(s.state_dir),
        "MOVIEREC_AI_URLS": ",".join(s.ai_urls),
    }
    logs = s.state_dir / "logs"
    for name, args, health in (
        ("ai", ["--port", str(s.ai_port)], f"{s.ai_urls[0]}/health"),
        ("web", ["--port", str(s.web_port)], f"{demo.web_url}healthz"),
    ):
        child = Child.start(name, ["serve", name, *args], logs / f"{name}.log", health, env)
        demo.children.append(child)
        child.wait_healthy()
        say(f"{name} server: pid {child.process.pid}, log {child.log}")


def start_demo(settings: Settings, options: DemoOptions, say: Say) -> Demo:
    """Bring everything up; on any failure, stop what was started and re-raise."""
    server, settings = start_database(settings, say)
    demo = Demo(settings, server, _secret(settings.state_dir / "demo_password", _password))
    try:
        database = Database(settings)
        try:
            load_data(database, options, say)
            ensure_demo_user(database, demo.password)
            ensure_model(database, settings, say)
        finally:
            database.dispose()
        start_servers(demo, say)
    except BaseException:
        demo.stop()
        raise
    return demo


def _password() -> str:
    return secrets.token_urlsafe(12)
