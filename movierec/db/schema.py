"""The relational schema, as SQLAlchemy 2 declarative models.

Alembic migrations (``movierec/db/migrations``) are the only way the schema reaches a server;
these models are what the code queries with. Rows that came from a data set carry
``(source, source_id)`` so that a re-import updates them instead of adding twins.

``movies``, ``ratings``, ``searches`` and ``preferences`` are hash-partitioned (migration 0004,
:mod:`movierec.db.partitions`): their parents have no primary key, unique index or foreign key
in the database (partitions may live on other servers). The ``primary_key`` columns below are
the key each partition carries (the ORM's identity); use
:func:`movierec.db.partitions.upsert`, not ``ON CONFLICT``, to insert-or-update them. Their
references to ``users`` and ``movies`` are enforced by triggers (``table_references``).
"""

from __future__ import annotations

from datetime import datetime

from flask_dance.consumer.storage.sqla import OAuthConsumerMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


class Base(DeclarativeBase):
    pass


class User(Base):
    """A person with a local password, external identities, or (imported) neither."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(Text)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Set by an administrator (0012): nobody may log in, every session and token ended.
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Part of every login session; raising it ends all of them ("log out everywhere").
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    source: Mapped[str | None] = mapped_column(String(32))
    source_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    identities: Mapped[list[Identity]] = relationship(back_populates="user")

    __table_args__ = (
        UniqueConstraint("source", "source_id", name="users_source_key"),
        # The admin page counts admins (migration 0016): a few rows, not every user.
        Index("users_admins_idx", "id", postgresql_where=text("is_admin")),
    )


class Identity(Base):
    """A login at an external OAuth / OpenID Connect provider, linked to one user."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    user: Mapped[User] = relationship(back_populates="identities")

    __table_args__ = (
        UniqueConstraint("provider", "subject", name="identities_provider_key"),
        # One account per provider and user: the provider's token is stored per (user, provider).
        UniqueConstraint("user_id", "provider", name="identities_user_provider_key"),
    )


class OAuthToken(OAuthConsumerMixin, Base):
    """The provider's token from a user's last login there (flask-dance's SQLAlchemy storage).

    Not change-history tracked: the history would keep copies of the access tokens.
    """

    __tablename__ = "oauth_tokens"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (UniqueConstraint("user_id", "provider", name="oauth_tokens_user_key"),)


class ApiToken(Base):
    """A personal API token: ``mrt_<prefix>_<secret>``; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EndedSession(Base):
    """A login session that was logged out, until it would have expired anyway (0011)."""

    __tablename__ = "ended_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ended_sessions_expires_at", "expires_at"),)


class Movie(Base):
    """A movie; partitioned by hash (id). ``(source, source_id)`` is unique through
    :class:`MovieSource`, which a trigger keeps in step."""

    __tablename__ = "movies"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(Text)
    year: Mapped[int | None] = mapped_column(SmallInteger)
    genres: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    imdb_id: Mapped[str | None] = mapped_column(String(16))
    tmdb_id: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(String(32))
    source_id: Mapped[int | None] = mapped_column(BigInteger)
    # 'simple' config: titles are in many languages, and stemming English words in them would
    # make "The Shining" match "shine"; trigram search covers typos.
    title_tsv: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple', title)", persisted=True)
    )

    __table_args__ = (
        Index("movies_title_tsv_idx", "title_tsv", postgresql_using="gin"),
        Index(
            "movies_title_trgm_idx",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
        Index("movies_genres_idx", "genres", postgresql_using="gin"),
        Index("movies_year_idx", "year"),
        # Titles by their number of trigrams, covering what search checks (migration 0015):
        # walked for a word many titles have (movierec.web.catalog.search).
        Index(
            "movies_title_trigrams_idx",
            text("(cardinality(show_trgm(title)))"),
            "id",
            postgresql_include=["title", "title_tsv", "genres", "year"],
        ),
        {"postgresql_partition_by": "HASH (id)"},
    )


class MovieSource(Base):
    """Which movie a data set's movie id became: the unique index over movies' (source,
    source_id) that a table partitioned by id cannot have. Maintained by a trigger on movies."""

    __tablename__ = "movie_sources"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    movie_id: Mapped[int] = mapped_column(BigInteger, index=True)


class MovieArrival(Base):
    """When a movie was added (0013): written by a trigger on movies, for "new this week"."""

    __tablename__ = "movie_arrivals"

    movie_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("movie_arrivals_added_at", "added_at"),)


class PopularMovie(Base):
    """One of the most rated movies as last counted (0017): written by the web worker that
    found the count due, read by every worker (movierec.web.popular)."""

    __tablename__ = "popular_movies"

    rank: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    movie_id: Mapped[int] = mapped_column(BigInteger)
    ratings: Mapped[int] = mapped_column(BigInteger)
    average: Mapped[float] = mapped_column(Float)
    counted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float] = mapped_column(Float)


class Rating(Base):
    """A user's rating of a movie; partitioned by hash (user_id). References users and
    movies (triggers; deleting either deletes the rating)."""

    __tablename__ = "ratings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    movie_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rating: Mapped[float] = mapped_column(Numeric(2, 1, asdecimal=False))
    rated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "rating >= 0.5 AND rating <= 5 AND rating * 2 = trunc(rating * 2)",
            name="ratings_rating_half_stars",
        ),
        Index("ratings_movie_id_idx", "movie_id"),
        {"postgresql_partition_by": "HASH (user_id)"},
    )


class Search(Base):
    """One search a user made; the recommender reads these as signals of taste.

    Partitioned by hash (user_id); each partition's key is (user_id, id), ``id`` comes from
    a sequence and is unique on its own."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    query: Mapped[str] = mapped_column(Text, default="", server_default="")
    genre: Mapped[str | None] = mapped_column(Text)
    year: Mapped[int | None] = mapped_column(SmallInteger)
    searched_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index("searches_user_time_idx", "user_id", "searched_at"),
        {"postgresql_partition_by": "HASH (user_id)"},
    )


class Preference(Base):
    """What a user said they like: genres and favourite movies. Partitioned by hash
    (user_id)."""

    __tablename__ = "preferences"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    genres: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    movie_ids: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), default=list, server_default="{}"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = ({"postgresql_partition_by": "HASH (user_id)"},)


class NotInterested(Base):
    """A movie the user dismissed from their recommendations ("not interested"); it is never
    recommended to them again. Not partitioned; no foreign key to the partitioned movies."""

    __tablename__ = "not_interested"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    movie_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PartitionedTable(Base):
    """A hash-partitioned table and the key each of its partitions (and shard tables)
    carries; the first key column is the partition column."""

    __tablename__ = "partitioned_tables"

    table_name: Mapped[str] = mapped_column(Text, primary_key=True)
    key_columns: Mapped[list[str]] = mapped_column(ARRAY(Text))


class TableReference(Base):
    """A reference enforced by triggers instead of a foreign key (see migration 0004)."""

    __tablename__ = "table_references"

    child_table: Mapped[str] = mapped_column(Text, primary_key=True)
    child_column: Mapped[str] = mapped_column(Text, primary_key=True)
    parent_table: Mapped[str] = mapped_column(Text)
    parent_column: Mapped[str] = mapped_column(Text)


class Impression(Base):
    """A recommendation list shown to a sampled user, in rank order (migration 0012): what
    online evaluation (:mod:`movierec.db.online_eval`) scores against later ratings."""

    __tablename__ = "impressions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(Text)
    shown_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    movie_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))


class AdminAudit(Base):
    """One action an admin took on the operator's dashboard (migration 0012)."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
