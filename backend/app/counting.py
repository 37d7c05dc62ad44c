"""Counting: counts recomputed from their rows, and views buffered in Redis.

Plain functions over a SQLAlchemy session and a Redis client; the Celery tasks in tasks.py are
thin wrappers around them."""
from __future__ import annotations

import logging
import uuid

from redis.exceptions import LockError
from sqlalchemy import text

from .models import COMMENT_MODELS, CONTENT_MODELS

log = logging.getLogger(__name__)

VIEW_BUFFER = "synspirit:views:{kind}"  # hash: content id -> views not yet in PostgreSQL
VIEW_BATCHES = "synspirit:views:batches"  # list of batch keys taken out of the buffer
VIEW_FLUSH_LOCK = "synspirit:views:flush-lock"
VIEW_FLUSH_SCHEDULED = "synspirit:views:flush-scheduled:{kind}"
FLUSH_DELAY = 1.0  # seconds between a view and the flush that writes it (at most)

COUNT_COLUMNS = ("views", "likes", "collects", "shares", "comments")


def _content_table(kind: str) -> str:
    return CONTENT_MODELS[kind].__tablename__


def _comment_table(kind: str) -> str:
    return COMMENT_MODELS[kind].__tablename__


def recompute_content_counts(session, kind: str, content_id: int) -> dict | None:
    """Set likes/collects/shares/comments of one post or article from its rows.

    Idempotent: running it twice, or late, gives the same result. Returns the counts, or None
    when the item no longer exists."""
    table, fk = _content_table(kind), f"{kind}_id"
    row = session.execute(
        text(
            f"""
            UPDATE {table} AS t SET
              likes_count = (SELECT count(*) FROM reactions
                             WHERE {fk} = :id AND action = 'like'),
              collects_count = (SELECT count(*) FROM reactions
                                WHERE {fk} = :id AND action = 'collect'),
              shares_count = (SELECT count(*) FROM reactions
                              WHERE {fk} = :id AND action = 'share'),
              comments_count = (SELECT count(*) FROM {_comment_table(kind)} WHERE {fk} = :id)
            WHERE t.id = :id
            RETURNING views_count, likes_count, collects_count, shares_count, comments_count
            """
        ),
        {"id": content_id},
    ).one_or_none()
    session.commit()
    return None if row is None else dict(zip(COUNT_COLUMNS, row, strict=True))


def recompute_comment_likes(session, kind: str, comment_id: int) -> tuple[int, int] | None:
    """Set a comment's like count from its rows; returns (parent content id, likes)."""
    fk = f"{kind}_comment_id"
    row = session.execute(
        text(
            f"""
            UPDATE {_comment_table(kind)} SET
              likes_count = (SELECT count(*) FROM reactions WHERE {fk} = :id)
            WHERE id = :id
            RETURNING {kind}_id, likes_count
            """
        ),
        {"id": comment_id},
    ).one_or_none()
    session.commit()
    return None if row is None else (row[0], row[1])


def record_view(redis, kind: str, content_id: int) -> tuple[int, bool]:
    """Buffer one view, in one round trip. Returns the views of this item still buffered
    (this one included) and whether the caller should schedule a flush (at most one scheduled
    flush per kind per FLUSH_DELAY, so views never cost a task each)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(VIEW_BUFFER.format(kind=kind), str(content_id), 1)
    pipe.set(VIEW_FLUSH_SCHEDULED.format(kind=kind), 1, nx=True, px=int(FLUSH_DELAY * 1000))
    pending, first = pipe.execute()
    return int(pending), bool(first)


def pending_views(redis, kind: str, content_id: int) -> int:
    """Views of one item still in the live buffer (not yet flushed)."""
    raw = redis.hget(VIEW_BUFFER.format(kind=kind), str(content_id))
    return int(raw or 0)


# Moves the live buffer into a uniquely named batch and queues the batch, atomically, so a view
# counted at the same moment lands either in this batch or in the next buffer, never nowhere.
_TAKE_BATCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('RPUSH', KEYS[3], KEYS[2])
  return 1
end
return 0
"""


def flush_views(redis, session) -> dict[str, dict[int, dict]]:
    """Write buffered views to PostgreSQL in batches, exactly once.

    Each batch's key is inserted into view_batches in the transaction that applies it; a batch
    left behind by a crash between that commit and its deletion from Redis is recognised and
    dropped instead of being applied twice. Returns {kind: {id: counts}} of what changed."""
    lock = redis.lock(VIEW_FLUSH_LOCK, timeout=60, blocking_timeout=5)
    if not lock.acquire():
        return {}
    try:
        take = redis.register_script(_TAKE_BATCH)
        for kind in CONTENT_MODELS:
            take(keys=[VIEW_BUFFER.format(kind=kind),
                       f"synspirit:views:batch:{kind}:{uuid.uuid4().hex}", VIEW_BATCHES])
        changed: dict[str, dict[int, dict]] = {kind: {} for kind in CONTENT_MODELS}
        for batch_key in [k.decode() for k in redis.lrange(VIEW_BATCHES, 0, -1)]:
            kind = batch_key.split(":")[3]
            views = {int(k): int(v) for k, v in redis.hgetall(batch_key).items()}
            changed[kind].update(_apply_batch(session, kind, batch_key, views))
            pipe = redis.pipeline()
            pipe.delete(batch_key)
            pipe.lrem(VIEW_BATCHES, 0, batch_key)
            pipe.execute()
        return changed
    finally:
        try:
            lock.release()
        except LockError:  # it expired; a later flush may run now and batches stay exact
            log.warning("view flush outlived its lock")


def _apply_batch(session, kind: str, batch_key: str, views: dict[int, int]) -> dict[int, dict]:
    fresh = session.execute(
        text("INSERT INTO view_batches (key) VALUES (:k) ON CONFLICT DO NOTHING RETURNING key"),
        {"k": batch_key},
    ).first()
    if fresh is None or not views:
        session.commit()
        return {}
    rows = session.execute(
        text(
            f"""
            UPDATE {_content_table(kind)} AS t SET views_count = t.views_count + v.n
            FROM (SELECT unnest(CAST(:ids AS integer[])) AS id,
                         unnest(CAST(:ns AS bigint[])) AS n) AS v
            WHERE t.id = v.id
            RETURNING t.id, views_count, likes_count, collects_count, shares_count,
                      comments_count
            """
        ),
        {"ids": list(views), "ns": list(views.values())},
    ).all()
    # Applied batches older than a day can no longer be pending anywhere.
    session.execute(text("DELETE FROM view_batches WHERE applied_at < now() - interval '1 day'"))
    session.commit()
    return {row[0]: dict(zip(COUNT_COLUMNS, row[1:], strict=True)) for row in rows}


def reconcile_content_counts(session, kind: str) -> dict[int, dict]:
    """Repair every post/article whose cached counts differ from its rows (a count task that
    could not be enqueued, say while the broker restarted). Returns {id: counts} repaired."""
    table, fk, comments = _content_table(kind), f"{kind}_id", _comment_table(kind)
    rows = session.execute(text(
        f"""
        UPDATE {table} AS t SET likes_count = c.likes, collects_count = c.collects,
               shares_count = c.shares, comments_count = c.comments
        FROM (SELECT i.id,
                (SELECT count(*) FROM reactions r WHERE r.{fk} = i.id AND r.action = 'like')
                  AS likes,
                (SELECT count(*) FROM reactions r WHERE r.{fk} = i.id AND r.action = 'collect')
                  AS collects,
                (SELECT count(*) FROM reactions r WHERE r.{fk} = i.id AND r.action = 'share')
                  AS shares,
                (SELECT count(*) FROM {comments} m WHERE m.{fk} = i.id) AS comments
              FROM {table} AS i) AS c
        WHERE t.id = c.id
          AND (t.likes_count, t.collects_count, t.shares_count, t.comments_count)
              IS DISTINCT FROM (c.likes, c.collects, c.shares, c.comments)
        RETURNING t.id, views_count, likes_count, collects_count, shares_count, comments_count
        """)).all()
    session.commit()
    return {row[0]: dict(zip(COUNT_COLUMNS, row[1:], strict=True)) for row in rows}


def reconcile_comment_likes(session, kind: str) -> list[tuple[int, int, int]]:
    """Repair comments whose like count differs from their likes: [(parent, id, likes)]."""
    fk = f"{kind}_comment_id"
    rows = session.execute(text(
        f"""
        UPDATE {_comment_table(kind)} AS t SET likes_count = c.likes
        FROM (SELECT m.id, (SELECT count(*) FROM reactions r WHERE r.{fk} = m.id) AS likes
              FROM {_comment_table(kind)} AS m) AS c
        WHERE t.id = c.id AND t.likes_count <> c.likes
        RETURNING t.{kind}_id, t.id, t.likes_count
        """)).all()
    session.commit()
    return [tuple(row) for row in rows]
