"""users.role: user, moderator or admin

Moderators act on reports, remove content and ban accounts; admins also name moderators. Admins
are also whoever SYNSPIRIT_ADMINS names, whatever this column holds (app/roles.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 08:45:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ROLE = postgresql.ENUM('user', 'moderator', 'admin', name='user_role')


def upgrade():
    ROLE.create(op.get_bind(), checkfirst=True)
    # A constant default: PostgreSQL 11+ adds the column without rewriting the table.
    op.add_column('users', sa.Column('role', postgresql.ENUM(name='user_role', create_type=False),
                                     server_default='user', nullable=False))


def downgrade():
    op.drop_column('users', 'role')
    ROLE.drop(op.get_bind(), checkfirst=True)
