"""popular movies: the most rated movies, counted by one web worker for all of them

Revision ID: 0017
Revises: 0016

Counting every rating took about a minute at 20M ratings (the site's statement on
bench/bench_scale.py's full-size cluster), and each web worker counted for itself: a new
worker showed no popular movies until its own first count ended (102 s after a restart of
the web instances), and every worker spent the database that long per count. ``popular_movies``
holds the last count (rank, movie, ratings, average) with when it was made and how long it
took; whichever worker finds it due counts under an advisory lock and replaces it, the
others read it (movierec.web.popular). The site's role writes it: a derived table, outside
the change history, as the site's own cache.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

WEB = "movierec_web"


def upgrade() -> None:
    op.create_table(
        "popular_movies",
        sa.Column("rank", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("movie_id", sa.BigInteger, nullable=False),
        sa.Column("ratings", sa.BigInteger, nullable=False),
        sa.Column("average", sa.Float, nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.execute(sa.text(f"GRANT SELECT, INSERT, DELETE ON popular_movies TO {WEB}"))


def downgrade() -> None:
    op.drop_table("popular_movies")
