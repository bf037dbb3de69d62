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


# Each local partition's copy named <index>_p<remainder>, as migration 0004 named the others
# (and movierec.db.partitions names the copies it makes).
RENAME = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname AS copy, t.relname AS part
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_index x ON x.indexrelid = c.oid
               JOIN pg_class t ON t.oid = x.indrelid
              WHERE i.inhparent = 'movies_title_trigrams_idx'::regclass
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.copy, 'movies_title_trigrams_idx_'
                       || coalesce(substring(r.part from '_(p[0-9]+)$'), r.part));
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(sa.text(INDEX))
    op.execute(sa.text(RENAME))


def downgrade() -> None:
    op.execute(sa.text("DROP INDEX movies_title_trigrams_idx"))
