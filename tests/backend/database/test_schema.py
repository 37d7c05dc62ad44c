"""The Alembic migrations: they match the models and go down and up again cleanly."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[3] / "backend"


def _flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", *args],
                          cwd=BACKEND, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_models_and_migrations_agree(stack_env):
    """`flask db check` finds nothing to autogenerate: no model change lacks a migration."""
    result = _flask(stack_env, "check")
    assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def _scratch_database(stack_env: dict, suffix: str):
    """The environment of an empty database next to the test database, dropped afterwards."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(stack_env["DATABASE_URL"])
    admin = sqlalchemy.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    scratch = f"{url.database}_{suffix}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{scratch}"')
    try:
        yield {**stack_env, "DATABASE_URL": url.set(database=scratch).render_as_string(False)}
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.dispose()


def test_migrations_downgrade_and_upgrade(stack_env):
    """The schema goes down to nothing and back up to head on a scratch database."""
    import sqlalchemy

    with _scratch_database(stack_env, "migrations") as env:
        for step in (["upgrade"], ["downgrade", "base"], ["upgrade"]):
            result = _flask(env, *step)
            assert result.returncode == 0, result.stderr
        engine = sqlalchemy.create_engine(env["DATABASE_URL"])
        with engine.connect() as conn:
            tables = set(conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").scalars())
        engine.dispose()
        assert {"users", "posts", "articles", "post_comments", "article_comments", "reactions",
                "view_batches", "revoked_tokens", "reaction_notices", "notifications",
                "alembic_version"} <= tables


def test_usernames_that_differ_only_by_case_are_renamed_not_lost(stack_env):
    """Upgrading a database that holds "bob", "Bob" and "BOB": the oldest keeps its name, the
    others get free names, every account (and its password) is kept, and the unique index
    refuses a new "bOb"."""
    import sqlalchemy

    with _scratch_database(stack_env, "casefold") as env:
        assert _flask(env, "upgrade", "0002").returncode == 0
        engine = sqlalchemy.create_engine(env["DATABASE_URL"])
        try:
            with engine.begin() as conn:
                for name in ("bob", "Bob", "BOB", "bob_2", "carol"):
                    conn.execute(sqlalchemy.text(
                        "INSERT INTO users (username, password_hash) VALUES (:n, 'hash-' || :n)"),
                        {"n": name})
            result = _flask(env, "upgrade")
            assert result.returncode == 0, result.stderr
            with engine.connect() as conn:
                rows = conn.execute(sqlalchemy.text(
                    "SELECT id, username, password_hash FROM users ORDER BY id")).all()
            names = [name for _, name, _ in rows]
            assert len(rows) == 5
            assert names[0] == "bob" and names[3:] == ["bob_2", "carol"]
            assert len({name.lower() for name in names}) == 5
            for user_id, name, _ in rows[1:3]:
                assert name.lower().startswith("bob_") and str(user_id) in name
                assert name in result.stderr  # the operator is told
            assert [h for _, _, h in rows] == ["hash-bob", "hash-Bob", "hash-BOB", "hash-bob_2",
                                                "hash-carol"]
            with engine.connect() as conn, pytest.raises(sqlalchemy.exc.IntegrityError):
                conn.execute(sqlalchemy.text(
                    "INSERT INTO users (username, password_hash) VALUES ('bOb', 'x')"))
        finally:
            engine.dispose()


def test_excerpts_rendered_before_escaping_are_escaped_by_the_upgrade(stack_env):
    """An article rendered by an older release keeps no raw markup in its excerpt."""
    import html

    import sqlalchemy

    raw = """<img src=x onerror="alert('1')"> & more"""
    with _scratch_database(stack_env, "excerpts") as env:
        assert _flask(env, "upgrade", "0003").returncode == 0
        engine = sqlalchemy.create_engine(env["DATABASE_URL"])
        try:
            with engine.begin() as conn:
                uid = conn.execute(sqlalchemy.text(
                    "INSERT INTO users (username, password_hash) VALUES ('old', 'x') RETURNING id"
                )).scalar()
                conn.execute(sqlalchemy.text(
                    "INSERT INTO articles (author_id, title, content, excerpt) "
                    "VALUES (:uid, 't', 'c', :raw), (:uid, 't', 'c', NULL)"),
                    {"uid": uid, "raw": raw})
            assert _flask(env, "upgrade").returncode == 0
            with engine.connect() as conn:
                excerpts = conn.execute(sqlalchemy.text(
                    "SELECT excerpt FROM articles ORDER BY id")).scalars().all()
            assert excerpts == [html.escape(raw), None]
            assert _flask(env, "downgrade", "0003").returncode == 0
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text(
                    "SELECT excerpt FROM articles ORDER BY id")).scalars().all() == [raw, None]
        finally:
            engine.dispose()


def test_every_counter_task_retries_backing_service_errors():
    """Each task carries the shared retry policy (autoretry, backoff with jitter)."""
    from app import tasks
    from app.celery_config import RETRY_KWARGS
    from sqlalchemy.exc import OperationalError

    for name in ("update_post_counts", "update_article_counts", "update_post_view_count",
                 "update_post_comment_likes_count", "update_article_comment_likes_count",
                 "update_article_view_count", "flush_view_counts", "render_article",
                 "recompute_hot_scores", "prune_notifications"):
        task = getattr(tasks, name)
        assert OperationalError in task.autoretry_for, name
        assert task.max_retries == RETRY_KWARGS["max_retries"] and task.retry_jitter, name
        assert task.acks_late and task.reject_on_worker_lost, name


def test_existing_items_become_searchable_by_the_upgrade(stack_env):
    """0009 on a database at 0008 holding 1,500 posts and 1,500 articles (more than one
    batch of 1,000): every item gets its search vector, CJK runs as character pairs, and
    `flask search index-missing` indexes items written later with plain SQL."""
    import sqlalchemy

    count = "SELECT count(*) FROM {} WHERE vector @@ to_tsquery('simple', :q)"
    with _scratch_database(stack_env, "search") as env:
        assert _flask(env, "upgrade", "0008").returncode == 0
        engine = sqlalchemy.create_engine(env["DATABASE_URL"])
        try:
            with engine.begin() as conn:
                uid = conn.execute(sqlalchemy.text(
                    "INSERT INTO users (username, password_hash) VALUES ('old', 'x') RETURNING id"
                )).scalar()
                for table in ("posts", "articles"):
                    conn.execute(sqlalchemy.text(
                        f"INSERT INTO {table} (author_id, title, content) "
                        "SELECT :uid, 'Old ' || i, '我昨天在知乎上写了回答 number' || i "
                        "FROM generate_series(1, 1500) AS i"), {"uid": uid})
            result = _flask(env, "upgrade")
            assert result.returncode == 0, result.stderr
            with engine.connect() as conn:
                for table in ("post_search", "article_search"):
                    assert conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")
                                        ).scalar() == 1500
                    assert conn.execute(sqlalchemy.text(count.format(table)),
                                        {"q": "知乎 <-> 乎上"}).scalar() == 1500
                    assert conn.execute(sqlalchemy.text(count.format(table)),
                                        {"q": "number1234 & old"}).scalar() == 1
                    assert conn.execute(sqlalchemy.text(count.format(table)),
                                        {"q": "乎知"}).scalar() == 0
            with engine.begin() as conn:  # written by SQL, as by an older release
                conn.execute(sqlalchemy.text(
                    "INSERT INTO posts (author_id, title, content) VALUES "
                    "(:uid, '新的', '鑫淼阁'), (:uid, '也是', '鑫淼阁')"), {"uid": uid})
            done = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "app", "search", "index-missing"],
                cwd=BACKEND, env={**os.environ, **env}, capture_output=True, text=True,
                timeout=120)
            assert done.returncode == 0, done.stderr
            assert "posts indexed: 2" in done.stdout and "articles indexed: 0" in done.stdout
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text(count.format("post_search")),
                                    {"q": "鑫淼 <-> 淼阁"}).scalar() == 2
            assert _flask(env, "downgrade", "0008").returncode == 0
        finally:
            engine.dispose()
