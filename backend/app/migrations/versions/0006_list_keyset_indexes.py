"""lists: (hot_score, id) and (created_at, id) indexes for keyset pagination

The lists page by keyset (`?cursor=`): `WHERE (hot_score, id) < (:s, :i) ORDER BY hot_score
DESC, id DESC LIMIT n` must be one index scan that reads n rows wherever the cursor points,
which needs the id in the index after the sort key. These replace the single-column indexes on
hot_score and created_at (a prefix of the new ones serves whatever used those).

Built CONCURRENTLY, outside the migration's transaction: on a large table a plain CREATE INDEX
would block every write to posts and articles for the whole build. If a concurrent build fails
it leaves an INVALID index behind; DROP it and run the upgrade again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:30:00

"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TABLES = ('posts', 'articles')


def upgrade():
    with op.get_context().autocommit_block():
        for table in TABLES:
            op.create_index(f'ix_{table}_hot_score_id', table, ['hot_score', 'id'], unique=False,
                            postgresql_concurrently=True, if_not_exists=True)
            op.create_index(f'ix_{table}_created_at_id', table, ['created_at', 'id'],
                            unique=False, postgresql_concurrently=True, if_not_exists=True)
            op.drop_index(f'ix_{table}_hot_score', table_name=table,
                          postgresql_concurrently=True, if_exists=True)
            op.drop_index(f'ix_{table}_created_at', table_name=table,
                          postgresql_concurrently=True, if_exists=True)


def downgrade():
    with op.get_context().autocommit_block():
        for table in TABLES:
            op.create_index(f'ix_{table}_hot_score', table, ['hot_score'], unique=False,
                            postgresql_concurrently=True, if_not_exists=True)
            op.create_index(f'ix_{table}_created_at', table, ['created_at'], unique=False,
                            postgresql_concurrently=True, if_not_exists=True)
            op.drop_index(f'ix_{table}_hot_score_id', table_name=table,
                          postgresql_concurrently=True, if_exists=True)
            op.drop_index(f'ix_{table}_created_at_id', table_name=table,
                          postgresql_concurrently=True, if_exists=True)
