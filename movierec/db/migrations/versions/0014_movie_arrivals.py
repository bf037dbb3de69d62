"""movie arrivals: when each movie was added, for the site's "new this week"

Revision ID: 0014
Revises: 0013

``movie_arrivals`` holds one row per movie: its id and when it was inserted, written by a
row trigger on ``movies`` as ``movie_sources`` is (0004), so it works whichever partition or
shard holds the movie, and a movie moved between partitions (triggers off, see
movierec.db.partitions.repartition) keeps its arrival. Deleting a movie deletes its row.
Movies that existed before this migration get none: they are not new; neither do the
movies of a data set's first load (movierec.db.bulk sets ``movierec.catalogue_load`` for
it), which are the catalogue, not arrivals. A later load of the same source (a newer
release) records the movies it adds. The site's role
reads it (``movierec.web.new_movies``); the table is not in the change history (a
bookkeeping row, rebuilt with the movie).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

WEB = "movierec_web"

FUNCTION = """
CREATE FUNCTION movierec_movie_arrival() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' AND current_setting('movierec.catalogue_load', true) = 'on' THEN
        RETURN NULL;  -- a data set's first load is a catalogue, not a week of new movies
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM movie_arrivals WHERE movie_id = OLD.id;
    ELSE
        INSERT INTO movie_arrivals (movie_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    op.create_table(
        "movie_arrivals",
        sa.Column("movie_id", sa.BigInteger, primary_key=True),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("movie_arrivals_added_at", "movie_arrivals", ["added_at"])
    op.execute(sa.text(FUNCTION))
    op.execute(
        sa.text(
            "CREATE TRIGGER movierec_movie_arrival AFTER INSERT OR DELETE ON movies "
            "FOR EACH ROW EXECUTE FUNCTION movierec_movie_arrival()"
        )
    )
    op.execute(sa.text(f"GRANT SELECT ON movie_arrivals TO {WEB}"))


def downgrade() -> None:
    op.execute(sa.text("DROP TRIGGER movierec_movie_arrival ON movies"))
    op.execute(sa.text("DROP FUNCTION movierec_movie_arrival()"))
    op.drop_table("movie_arrivals")
