"""reaction notices: at most one notification per actor, action and target

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:30:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TARGETS = ("post_id", "article_id", "post_comment_id", "article_comment_id")


def upgrade():
    op.create_table('reaction_notices',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('action', postgresql.ENUM('like', 'collect', 'share', name='reaction_action',
                                        create_type=False), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=True),
    sa.Column('article_id', sa.Integer(), nullable=True),
    sa.Column('post_comment_id', sa.Integer(), nullable=True),
    sa.Column('article_comment_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('num_nonnulls(post_id, article_id, post_comment_id, article_comment_id) = 1', name=op.f('ck_reaction_notices_one_target')),
    sa.ForeignKeyConstraint(['article_comment_id'], ['article_comments.id'], name=op.f('fk_reaction_notices_article_comment_id_article_comments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], name=op.f('fk_reaction_notices_article_id_articles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['post_comment_id'], ['post_comments.id'], name=op.f('fk_reaction_notices_post_comment_id_post_comments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_reaction_notices_post_id_posts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_reaction_notices_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reaction_notices')),
    *(sa.UniqueConstraint('user_id', 'action', target,
                          name=op.f(f'uq_reaction_notices_user_id_action_{target}'))
      for target in TARGETS)
    )
    for target in TARGETS:
        op.create_index(f'ix_reaction_notices_{target}', 'reaction_notices', [target],
                        unique=False, postgresql_where=sa.text(f'{target} IS NOT NULL'))
    # What was notified before: every reaction that exists now (its author was told when it
    # was made), so that undoing and redoing one does not notify again after the upgrade.
    op.execute("""
        INSERT INTO reaction_notices (user_id, action, post_id, article_id, post_comment_id,
                                      article_comment_id, created_at)
        SELECT user_id, action, post_id, article_id, post_comment_id, article_comment_id,
               created_at
        FROM reactions
    """)


def downgrade():
    op.drop_table('reaction_notices')
