"""escape the excerpts rendered before excerpts were HTML-escaped

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:00:00

"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# As Python's html.escape (rendering.render_article), `&` first.
ESCAPE = [("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;")]


def _replace_all(pairs) -> str:
    expr = "excerpt"
    for old, new in pairs:
        expr = f"replace({expr}, {_quote(old)}, {_quote(new)})"
    return expr


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def upgrade():
    op.execute(f"UPDATE articles SET excerpt = {_replace_all(ESCAPE)} WHERE excerpt IS NOT NULL")


def downgrade():
    unescape = [(new, old) for old, new in reversed(ESCAPE)]
    op.execute(f"UPDATE articles SET excerpt = {_replace_all(unescape)} WHERE excerpt IS NOT NULL")
