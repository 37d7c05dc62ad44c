"""The view buffer's exactly-once flush, against the real Redis and PostgreSQL: a flush that
crashed after writing to PostgreSQL but before cleaning Redis is not applied twice."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text


@pytest.fixture
def app_ctx(stack_env, monkeypatch):
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    from app import create_app
    app = create_app()
    with app.app_context():
        yield app


def _new_post(session) -> int:
    uid = session.execute(text(
        "INSERT INTO users (username, password_hash) VALUES (:n, 'x') RETURNING id"),
        {"n": f"v{uuid.uuid4().hex[:12]}"}).scalar()
    pid = session.execute(text(
        "INSERT INTO posts (author_id, title, content) VALUES (:u, 't', 'c') RETURNING id"),
        {"u": uid}).scalar()
    session.commit()
    return pid


def _views(session, pid) -> int:
    session.rollback()
    return session.execute(text("SELECT views_count FROM posts WHERE id = :id"),
                           {"id": pid}).scalar()


def test_a_batch_applied_before_a_crash_is_not_applied_again(app_ctx):
    from app import counting
    from app.extensions import db, redis_client

    redis, session = redis_client(), db.session
    pid = _new_post(session)
    for _ in range(7):
        counting.record_view(redis, "post", pid)

    # The first half of a flush: the buffer becomes a queued batch, applied to PostgreSQL...
    batch = f"synspirit:views:batch:post:{uuid.uuid4().hex}"
    take = redis.register_script(counting._TAKE_BATCH)
    assert take(keys=[counting.VIEW_BUFFER.format(kind="post"), batch, counting.VIEW_BATCHES])
    views = {int(k): int(v) for k, v in redis.hgetall(batch).items()}
    counting._apply_batch(session, "post", batch, views)
    # ...and then the process dies before deleting the batch from Redis.
    assert _views(session, pid) == 7
    assert redis.exists(batch) or _views(session, pid) == 7  # a concurrent flush may clean up

    for _ in range(3):
        counting.record_view(redis, "post", pid)
    counting.flush_views(redis, session)
    assert _views(session, pid) == 10
    assert not redis.exists(batch)
    assert batch.encode() not in redis.lrange(counting.VIEW_BATCHES, 0, -1)


def test_views_of_a_deleted_post_are_dropped_quietly(app_ctx):
    from app import counting
    from app.extensions import db, redis_client

    redis, session = redis_client(), db.session
    pid = _new_post(session)
    counting.record_view(redis, "post", pid)
    session.execute(text("DELETE FROM posts WHERE id = :id"), {"id": pid})
    session.commit()
    counting.flush_views(redis, session)  # must not fail or leave the batch behind
    assert counting.pending_views(redis, "post", pid) == 0
