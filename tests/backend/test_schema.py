"""The Alembic migrations: they match the models and go down and up again cleanly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def _flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", *args],
                          cwd=BACKEND, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_models_and_migrations_agree(stack_env):
    """`flask db check` finds nothing to autogenerate: no model change lacks a migration."""
    result = _flask(stack_env, "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_downgrade_and_upgrade(stack_env):
    """The schema goes down to nothing and back up to head on a scratch database."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(stack_env["DATABASE_URL"])
    admin = sqlalchemy.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    scratch = f"{url.database}_migrations"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{scratch}"')
    env = {**stack_env, "DATABASE_URL": url.set(database=scratch).render_as_string(False)}
    try:
        for step in (["upgrade"], ["downgrade", "base"], ["upgrade"]):
            result = _flask(env, *step)
            assert result.returncode == 0, result.stderr
        engine = sqlalchemy.create_engine(env["DATABASE_URL"])
        with engine.connect() as conn:
            tables = set(conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").scalars())
        engine.dispose()
        assert {"users", "posts", "articles", "post_comments", "article_comments", "reactions",
                "view_batches", "alembic_version"} <= tables
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.dispose()


def test_every_counter_task_retries_backing_service_errors():
    """Each task carries the shared retry policy (autoretry, backoff with jitter)."""
    from app import tasks
    from app.celery_setup import RETRY_KWARGS
    from sqlalchemy.exc import OperationalError

    for name in ("update_post_counts", "update_article_counts", "update_post_view_count",
                 "update_post_comment_likes_count", "update_article_comment_likes_count",
                 "update_article_view_count", "flush_view_counts", "render_article",
                 "recompute_hot_scores"):
        task = getattr(tasks, name)
        assert OperationalError in task.autoretry_for, name
        assert task.max_retries == RETRY_KWARGS["max_retries"] and task.retry_jitter, name
        assert task.acks_late and task.reject_on_worker_lost, name
