"""reports, and removal by moderators (removed_at on posts, articles and comments)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 09:00:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

STATUS = postgresql.ENUM('open', 'removed', 'dismissed', name='report_status')
REMOVABLE = ('posts', 'articles', 'post_comments', 'article_comments')


def upgrade():
    for table in REMOVABLE:  # nullable, no default: no table rewrite
        op.add_column(table, sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True))
    STATUS.create(op.get_bind(), checkfirst=True)
    op.create_table('reports',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', postgresql.ENUM(name='report_status', create_type=False), server_default='open', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolved_by_id', sa.Integer(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reporter_id'], ['users.id'], name=op.f('fk_reports_reporter_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_reports_resolved_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports'))
    )
    op.create_index('uq_reports_open_per_reporter_and_target', 'reports',
                    ['reporter_id', 'target_type', 'target_id'], unique=True,
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index('ix_reports_status_id', 'reports', ['status', 'id'])
    op.create_index('ix_reports_target', 'reports', ['target_type', 'target_id'])


def downgrade():
    op.drop_table('reports')
    STATUS.drop(op.get_bind(), checkfirst=True)
    for table in REMOVABLE:
        op.drop_column(table, 'removed_at')
