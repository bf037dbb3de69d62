"""title search by length: a covering index of titles by their number of trigrams

Revision ID: 0015
Revises: 0014

``movies_title_trigrams_idx`` orders titles by ``cardinality(show_trgm(title))`` (how many
distinct trigrams a title has, what ``similarity()`` divides by) and id, and carries what a
search checks on each title (title, title_tsv, genres, year) so that walking it reads no
table rows. :func:`movierec.web.catalog.search` walks it for a word that many titles have:
among titles holding the query's words side by side (``word_similarity = 1``), the best
matches are the ones with the fewest trigrams, so the first page is the first such titles
of the walk, found without scoring every title that has the word (see catalog.search for
why, with the measurements). PostgreSQL builds it on every local partition; shard servers
get it with the parent's other indexes when a partition is placed there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEX = (
    "CREATE INDEX movies_title_trigrams_idx ON movies "
    "((cardinality(show_trgm(title))), id) INCLUDE (title, title_tsv, genres, year)"
)


def upgrade() -> None:
    op.execute(sa.text(INDEX))


def downgrade() -> None:
    op.execute(sa.text("DROP INDEX movies_title_trigrams_idx"))
