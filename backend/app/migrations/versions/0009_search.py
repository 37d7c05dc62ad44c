"""search: post_search and article_search (a tsvector per item, GIN), filled for the items
that exist

The vectors are app/search.py's document_vector of each item's title and content (CJK runs
as their character pairs, other words as the `simple` configuration reads them), in narrow
side tables rather than in the wide posts/articles rows (docs/performance.md, Search). The
backfill runs in batches of 1,000 items per statement.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 08:45:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

TABLES = (('post_search', 'posts', 'post'), ('article_search', 'articles', 'article'))


def upgrade():
    from app.search import index_missing

    for table, items, _ in TABLES:
        op.create_table(table,
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('vector', postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(['id'], [f'{items}.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id')
        )
    # Filled before the GIN indexes are built: one build instead of an update per row.
    bind = op.get_bind()
    for table, _, kind in TABLES:
        done = index_missing(bind, kind, batch=1000, removed=False)
        print(f"0009: {done} {kind}s indexed for search")
        op.create_index(f'ix_{table}_vector', table, ['vector'], unique=False,
                        postgresql_using='gin')


def downgrade():
    for table, _, _ in reversed(TABLES):
        op.drop_index(f'ix_{table}_vector', table_name=table, postgresql_using='gin')
        op.drop_table(table)
