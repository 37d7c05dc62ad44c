"""usernames unique whatever the case

Accounts whose names differ only by case ("alice", "Alice") may exist from before: the oldest
keeps its name, each newer one is renamed to NAME_ID (cut to 32 characters, more underscores
if that is taken too) and listed in the migration's output, so that the unique index can be
built and nothing is deleted. Tell those users their new name; their passwords, tokens and
content are unchanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00

"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _free_name(conn, name: str, user_id: int) -> str:
    suffix = f"_{user_id}"
    while True:
        candidate = name[:32 - len(suffix)] + suffix
        taken = conn.execute(sa.text("SELECT 1 FROM users WHERE lower(username) = lower(:n)"),
                             {"n": candidate}).first()
        if taken is None:
            return candidate
        suffix = "_" + suffix


def upgrade():
    conn = op.get_bind()
    # No registration may slip a new duplicate in between the renames and the index.
    conn.execute(sa.text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
    newer = conn.execute(sa.text(
        """
        SELECT id, username FROM (
          SELECT id, username,
                 row_number() OVER (PARTITION BY lower(username) ORDER BY id) AS nth
          FROM users) AS ranked
        WHERE nth > 1 ORDER BY id
        """)).all()
    for user_id, name in newer:
        renamed = _free_name(conn, name, user_id)
        conn.execute(sa.text("UPDATE users SET username = :new WHERE id = :id"),
                     {"new": renamed, "id": user_id})
        log.warning("user %d renamed from %r to %r: an older account has that name in "
                    "another case", user_id, name, renamed)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('uq_users_username', type_='unique')
        batch_op.create_index('uq_users_username_lower', [sa.text('lower(username)')],
                              unique=True)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('uq_users_username_lower')
        batch_op.create_unique_constraint('uq_users_username', ['username'])
