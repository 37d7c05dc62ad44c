"""Operators' command: `flask --app app search index-missing` (docs/operations.md, "Search"):
index the posts and articles that have no search row (written by SQL, or by an older release
during a rolling deploy), a thousand per committed statement. Safe to run at any time and
more than once; items the web instances write meanwhile are indexed by them."""
import time

import click
from flask.cli import AppGroup

from .extensions import db
from .search import TABLES, index_missing

search = AppGroup("search", help="The search index (app/search.py).")


@search.command("index-missing")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100000),
              help="Items per statement (each committed).")
def index_missing_command(batch: int) -> None:
    """Index every post and article that has no search row (removed ones excepted)."""
    for kind in TABLES:
        started = time.monotonic()
        with db.engine.connect() as conn:
            done = index_missing(conn, kind, batch=batch, commit=conn.commit)
        click.echo(f"{kind}s indexed: {done} ({time.monotonic() - started:.1f} s)")
