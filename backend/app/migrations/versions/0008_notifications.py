"""notifications: stored, with read state

Every notification pushed over Socket.IO is also a row here, written by the statement that
stores its cause (actions/routes.py, content/routes.py). Read rows older than
NOTIFICATION_RETENTION_DAYS are pruned by the `prune-notifications` periodic task.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 08:50:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TYPE = postgresql.ENUM('like', 'collect', 'share', 'comment', 'moderation',
                       name='notification_type')
TARGET = postgresql.ENUM('post', 'article', 'post_comment', 'article_comment',
                         name='notification_target')


def upgrade():
    TYPE.create(op.get_bind(), checkfirst=True)
    TARGET.create(op.get_bind(), checkfirst=True)
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=False),
    sa.Column('type', postgresql.ENUM(name='notification_type', create_type=False),
              nullable=False),
    sa.Column('target_type', postgresql.ENUM(name='notification_target', create_type=False),
              nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('comment_id', sa.Integer(), nullable=True),
    sa.Column('read', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_notifications_actor_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    # A user's list, newest first, by cursor; their unread ones (the count, marking read); the
    # read ones by age (pruning); an actor's, for ON DELETE CASCADE of the actor's account.
    op.create_index('ix_notifications_user_id_id', 'notifications', ['user_id', 'id'],
                    unique=False)
    op.create_index('ix_notifications_unread', 'notifications', ['user_id', 'id'], unique=False,
                    postgresql_where=sa.text('NOT read'))
    op.create_index('ix_notifications_read_created_at', 'notifications', ['created_at'],
                    unique=False, postgresql_where=sa.text('read'))
    op.create_index('ix_notifications_actor_id', 'notifications', ['actor_id'], unique=False)


def downgrade():
    op.drop_table('notifications')
    TARGET.drop(op.get_bind(), checkfirst=True)
    TYPE.drop(op.get_bind(), checkfirst=True)
