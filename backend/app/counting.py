"""Counting: counts recomputed from their rows, and views buffered in Redis.

Plain functions over a SQLAlchemy session and a Redis client; the Celery tasks in tasks.py are
thin wrappers around them."""
from __future__ import annotations

import logging
import uuid

from redis.exceptions import LockError
from sqlalchemy import text

from .item_cache import (
    COUNT_FIELDS,
    counts_key,
    parse_counts,
    store_counts,
    version_key,
)
from .models import COMMENT_MODELS, CONTENT_MODELS
from .redis_batch import ScriptBatcher

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


def _publish_counts(redis, kind: str, rows: dict[int, dict]) -> None:
    """Copy counts just written to PostgreSQL into their Redis hashes (item_cache.py), while
    the transaction still holds the rows' locks: the hashes are written in commit order. A Redis
    error propagates, so the transaction is rolled back and the task retried."""
    if redis is None or not rows:
        return
    pipe = redis.pipeline(transaction=False)
    for content_id, counts in rows.items():
        store_counts(pipe, kind, content_id, counts)
    pipe.execute()


def recompute_content_counts(session, kind: str, content_id: int,
                             redis=None) -> dict | None:
    """Set likes/collects/shares/comments of one post or article from its rows (and, given
    redis, its counts hash).

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
    counts = None if row is None else dict(zip(COUNT_COLUMNS, row, strict=True))
    if counts is not None:
        _publish_counts(redis, kind, {content_id: counts})
    session.commit()
    return counts


# Recounts of posts/articles, coalesced: a change adds the item's id to a per-kind "dirty" set
# and schedules one recount task unless one is already scheduled; the task recounts every dirty
# id in one statement. 64 likes in flight then cost a handful of tasks, not 64 (`make bench`
# likes: the io queue, fed one recount and one notification per like, fell behind the web).
RECOUNT_DIRTY = "synspirit:recount:{kind}"  # set: ids whose counts must be recomputed
RECOUNT_BATCHES = "synspirit:recount:batches"  # list of dirty sets taken out, not yet done
RECOUNT_SCHEDULED = "synspirit:recount:scheduled:{kind}"
RECOUNT_SCHEDULED_TTL = 60_000  # ms: a lost task delays recounts by this much at worst

_TAKE_DIRTY = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('RPUSH', KEYS[3], KEYS[2])
  return 1
end
return 0
"""


def mark_dirty(redis, kind: str, content_id: int) -> bool:
    """Note that an item's counts must be recomputed (one round trip). Returns whether the
    caller must enqueue the recount task (none is scheduled and not yet started)."""
    pipe = redis.pipeline(transaction=False)
    pipe.sadd(RECOUNT_DIRTY.format(kind=kind), content_id)
    pipe.set(RECOUNT_SCHEDULED.format(kind=kind), 1, nx=True, px=RECOUNT_SCHEDULED_TTL)
    return bool(pipe.execute()[1])


def unschedule(redis, kind: str) -> None:
    """Forget the scheduled mark (the task could not be enqueued)."""
    redis.delete(RECOUNT_SCHEDULED.format(kind=kind))


def recount_dirty(redis, session, kind: str, on_pass=None) -> dict[int, dict]:
    """Recompute the counts of every dirty post/article of kind; returns {id: counts}.

    The scheduled mark stays set while this runs, so one recount runs per kind at a time and
    ids marked meanwhile wait in the set for its next pass (one statement for all of them:
    concurrent recounts of overlapping ids queued on each other's row locks). Before it stops
    it clears the mark and looks once more: an id added after that look finds no mark and
    schedules another task; one added before it is taken by another pass here. Recounts are
    idempotent, so a take left behind by a crash is simply done again. on_pass({id: counts})
    is called after each pass (the task emits the new counts there, not only at the end)."""
    take = redis.register_script(_TAKE_DIRTY)
    mark, dirty = RECOUNT_SCHEDULED.format(kind=kind), RECOUNT_DIRTY.format(kind=kind)
    changed: dict[int, dict] = {}
    while True:
        take(keys=[dirty, f"synspirit:recount:batch:{kind}:{uuid.uuid4().hex}",
                   RECOUNT_BATCHES])
        for batch_key in [k.decode() for k in redis.lrange(RECOUNT_BATCHES, 0, -1)]:
            if batch_key.split(":")[3] != kind:
                continue
            ids = sorted(int(i) for i in redis.smembers(batch_key))
            if ids:
                done = recompute_many_content_counts(session, kind, ids, redis)
                changed.update(done)
                if on_pass is not None:
                    on_pass(done)
            pipe = redis.pipeline()
            pipe.delete(batch_key)
            pipe.lrem(RECOUNT_BATCHES, 0, batch_key)
            pipe.execute()
        redis.delete(mark)
        if not redis.exists(dirty):
            return changed
        if not redis.set(mark, 1, nx=True, px=RECOUNT_SCHEDULED_TTL):
            return changed  # a change made after the delete scheduled another task


def recompute_many_content_counts(session, kind: str, ids: list[int],
                                  redis=None) -> dict[int, dict]:
    """recompute_content_counts for many items in one statement (rows locked in id order, so
    two of these never deadlock each other)."""
    table, fk = _content_table(kind), f"{kind}_id"
    rows = session.execute(
        text(
            f"""
            WITH locked AS (SELECT id FROM {table} WHERE id = ANY(CAST(:ids AS integer[]))
                            ORDER BY id FOR UPDATE)
            UPDATE {table} AS t SET
              likes_count = (SELECT count(*) FROM reactions
                             WHERE {fk} = t.id AND action = 'like'),
              collects_count = (SELECT count(*) FROM reactions
                                WHERE {fk} = t.id AND action = 'collect'),
              shares_count = (SELECT count(*) FROM reactions
                              WHERE {fk} = t.id AND action = 'share'),
              comments_count = (SELECT count(*) FROM {_comment_table(kind)} WHERE {fk} = t.id)
            FROM locked WHERE t.id = locked.id
            RETURNING t.id, views_count, likes_count, collects_count, shares_count,
                      comments_count
            """
        ),
        {"ids": list(ids)},
    ).all()
    changed = {row[0]: dict(zip(COUNT_COLUMNS, row[1:], strict=True)) for row in rows}
    _publish_counts(redis, kind, changed)
    session.commit()
    return changed


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
    pending, first, _, _ = view_and_read(redis, kind, content_id)
    return pending, first


# A read of an item in one command (one round trip, one reply to parse): count the view, set
# the flush mark, read the counts hash and the body version. One EVALSHA costs the web worker
# less than a four-command pipeline (packing and parsing four commands was most of the
# `view_and_read` share of the post_get profile, docs/performance.md).
_VIEW_AND_READ = """
local pending = 0
local first = false
if ARGV[1] == '1' then
  pending = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  first = redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[3])
end
local counts = redis.call('HMGET', KEYS[3], 'views', 'likes', 'collects', 'shares', 'comments')
local version = redis.call('GET', KEYS[4])
return {pending, first and 1 or 0, counts, version or 0}
"""
# The reads in flight in one process share a pipeline (group commit, redis_batch.py): in
# `make bench` a read's own EVALSHA round trip was a fifth of its CPU (docs/performance.md).
_view_and_read = ScriptBatcher(_VIEW_AND_READ)

def view_and_read(redis, kind: str, content_id: int,
                  count: bool = True) -> tuple[int, bool, dict | None, int]:
    """One round trip for a read of an item: buffer the view (unless count=False), and read the
    item's counts hash and body version (item_cache.py). Returns (views still buffered,
    schedule a flush?, counts as PostgreSQL has them or None, version)."""
    pending, first, raw, version = _view_and_read(
        redis,
        [VIEW_BUFFER.format(kind=kind), VIEW_FLUSH_SCHEDULED.format(kind=kind),
         counts_key(kind, content_id), version_key(kind, content_id)],
        ["1" if count else "0", str(content_id), int(FLUSH_DELAY * 1000)])
    raw = list(raw) + [None] * (len(COUNT_FIELDS) - len(raw))  # trailing nils are dropped
    return int(pending), bool(first), parse_counts(raw), int(version or 0)


def pending_views(redis, kind: str, content_id: int) -> int:
    """Views of one item still in the live buffer (not yet flushed)."""
    raw = redis.hget(VIEW_BUFFER.format(kind=kind), str(content_id))
    return int(raw or 0)


# Moves the live buffer into a uniquely named batch and queues the batch, atomically, so a view
# counted at the same moment lands either in this batch or in the next buffer, never nowhere.
# The views taken are also added to the items' counts hashes (item_cache.py) where those
# exist, so a read during the flush still sees them (the flush then writes what PostgreSQL has).
_TAKE_BATCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('RPUSH', KEYS[3], KEYS[2])
  if ARGV[1] then
    local views = redis.call('HGETALL', KEYS[2])
    for i = 1, #views, 2 do
      local counts = ARGV[1] .. views[i]
      if redis.call('EXISTS', counts) == 1 then
        redis.call('HINCRBY', counts, 'views', views[i + 1])
      end
    end
  end
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
                       f"synspirit:views:batch:{kind}:{uuid.uuid4().hex}", VIEW_BATCHES],
                 args=[counts_key(kind, "")])
        changed: dict[str, dict[int, dict]] = {kind: {} for kind in CONTENT_MODELS}
        for batch_key in [k.decode() for k in redis.lrange(VIEW_BATCHES, 0, -1)]:
            kind = batch_key.split(":")[3]
            views = {int(k): int(v) for k, v in redis.hgetall(batch_key).items()}
            changed[kind].update(_apply_batch(session, kind, batch_key, views, redis))
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


def _apply_batch(session, kind: str, batch_key: str, views: dict[int, int],
                 redis=None) -> dict[int, dict]:
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
            WITH locked AS (SELECT id FROM {_content_table(kind)}
                            WHERE id = ANY(CAST(:ids AS integer[])) ORDER BY id FOR UPDATE)
            UPDATE {_content_table(kind)} AS t SET views_count = t.views_count + v.n
            FROM (SELECT unnest(CAST(:ids AS integer[])) AS id,
                         unnest(CAST(:ns AS bigint[])) AS n) AS v, locked
            WHERE t.id = v.id AND locked.id = v.id
            RETURNING t.id, views_count, likes_count, collects_count, shares_count,
                      comments_count
            """
        ),
        {"ids": list(views), "ns": list(views.values())},
    ).all()
    # Applied batches older than a day can no longer be pending anywhere.
    session.execute(text("DELETE FROM view_batches WHERE applied_at < now() - interval '1 day'"))
    changed = {row[0]: dict(zip(COUNT_COLUMNS, row[1:], strict=True)) for row in rows}
    _publish_counts(redis, kind, changed)
    session.commit()
    return changed


def reconcile_content_counts(session, kind: str, redis=None) -> dict[int, dict]:
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
    repaired = {row[0]: dict(zip(COUNT_COLUMNS, row[1:], strict=True)) for row in rows}
    _publish_counts(redis, kind, repaired)
    session.commit()
    return repaired


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
