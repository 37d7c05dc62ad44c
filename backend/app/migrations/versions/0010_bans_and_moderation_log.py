"""bans (users.banned_at, banned_until, ban_reason) and the moderation log

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 09:20:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ACTION = postgresql.ENUM('ban', 'unban', 'role', 'remove', 'dismiss', name='moderation_action')


def upgrade():
    # Nullable columns without defaults: no table rewrite.
    op.add_column('users', sa.Column('banned_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('banned_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('ban_reason', sa.Text(), nullable=True))
    ACTION.create(op.get_bind(), checkfirst=True)
    op.create_table('moderation_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('moderator_id', sa.Integer(), nullable=True),
    sa.Column('action', postgresql.ENUM(name='moderation_action', create_type=False), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['moderator_id'], ['users.id'], name=op.f('fk_moderation_log_moderator_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_moderation_log'))
    )
    op.create_index('ix_moderation_log_target', 'moderation_log', ['target_type', 'target_id'])


def downgrade():
    op.drop_table('moderation_log')
    ACTION.drop(op.get_bind(), checkfirst=True)
    op.drop_column('users', 'ban_reason')
    op.drop_column('users', 'banned_until')
    op.drop_column('users', 'banned_at')
