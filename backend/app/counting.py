"""Counting: the cached counts of posts, articles and comments, and the views buffered in Redis.

Plain functions over a SQLAlchemy session and a Redis client; the Celery tasks in tasks.py call
them and emit what changed. The two paths, top-down:

- A read of a post or article (content/routes.py `show`) counts its view with `view_and_read`
  (the view goes into a per-kind buffer hash in Redis; a viewer's reads of one item count once
  per VIEW_DEDUP_SECONDS). The first view after a flush enqueues
  tasks.flush_view_counts, which runs `flush_views` within FLUSH_DELAY: the buffer is taken
  whole into a batch and the batch is added to views_count, exactly once.
- A like, collect, share or comment (dispatch.recount) marks the item dirty (`mark_dirty`); the
  first mark enqueues the kind's count task (tasks.update_post_counts / update_article_counts),
  which runs `recount_dirty`: the dirty set is taken whole into a batch and every id in it is
  recounted from its rows in one statement.

Both write what they committed into the items' counts hashes (item_cache.py) while they still
hold the rows' locks, and both use the same take-then-drain of a Redis key (`_Batches`).
"""
from __future__ import annotations

import logging
import uuid

from redis.exceptions import LockError
from sqlalchemy import text

from .item_cache import COUNT_FIELDS, counts_key, parse_counts, store_counts, version_key
from .models import COMMENT_MODELS, CONTENT_MODELS
from .redis_batch import ScriptBatcher

log = logging.getLogger(__name__)


def _content_table(kind: str) -> str:
    return CONTENT_MODELS[kind].__tablename__


def _comment_table(kind: str) -> str:
    return COMMENT_MODELS[kind].__tablename__


# What the statements below that update a post or article (aliased t) return: its id and the
# columns behind COUNT_FIELDS (item_cache.py, the one list of an item's counts), in that order.
_RETURNING = "t.id, " + ", ".join(f"t.{field}_count" for field in COUNT_FIELDS)


def _counts_of(rows) -> dict[int, dict]:
    """Rows of `RETURNING {_RETURNING}` -> {id: counts}."""
    return {row[0]: dict(zip(COUNT_FIELDS, row[1:], strict=True)) for row in rows}


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


# --- take a live Redis key whole, then drain what was taken --------------------------------------

# Moves a live key (the view buffer, a hash; a dirty set) into a uniquely named batch and queues
# the batch, atomically, so a change made at the same moment lands either in this batch or in
# the next live key, never nowhere. Given ARGV[1] (a counts-hash key prefix, for view batches),
# the views taken are also added to the items' counts hashes (item_cache.py) where those exist,
# so a read during the flush still sees them (the flush then writes what PostgreSQL has).
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


class _Batches:
    """A per-kind live key whose contents are taken whole into batches (`take`) that are then
    applied and dropped one by one (`drain`). A batch stays queued until it was applied, so a
    crash in between leaves it for the next drain: what applies it must be idempotent or, like
    the view flush, recognise a batch it already applied."""

    def __init__(self, live: str, batch: str, queue: str):
        self.live = live  # the key changes go to: "...{kind}"
        self.batch = batch  # a taken batch: "...{kind}:{token}"
        self.queue = queue  # list of the batches taken and not yet dropped (every kind)

    def take(self, redis, kind: str, counts_prefix: str | None = None) -> None:
        redis.register_script(_TAKE_BATCH)(
            keys=[self.live.format(kind=kind),
                  self.batch.format(kind=kind, token=uuid.uuid4().hex), self.queue],
            args=[] if counts_prefix is None else [counts_prefix])

    def kind_of(self, batch_key: str) -> str | None:
        for kind in CONTENT_MODELS:
            if batch_key.startswith(self.batch.format(kind=kind, token="")):
                return kind
        return None

    def drain(self, redis, kinds, apply) -> None:
        """apply(kind, batch key) for each queued batch of one of kinds, oldest first, then drop
        the batch; an exception from apply leaves that batch and the later ones queued."""
        for batch_key in [k.decode() for k in redis.lrange(self.queue, 0, -1)]:
            kind = self.kind_of(batch_key)
            if kind not in kinds:
                continue
            apply(kind, batch_key)
            pipe = redis.pipeline()
            pipe.delete(batch_key)
            pipe.lrem(self.queue, 0, batch_key)
            pipe.execute()


# --- views ---------------------------------------------------------------------------------------

VIEW_BUFFER = "synspirit:views:{kind}"  # hash: content id -> views not yet in PostgreSQL
VIEW_BATCH = "synspirit:views:batch:{kind}:{token}"  # a buffer taken by a flush
VIEW_BATCHES = "synspirit:views:batches"  # list of batch keys taken out of the buffer
VIEW_FLUSH_LOCK = "synspirit:views:flush-lock"
VIEW_FLUSH_SCHEDULED = "synspirit:views:flush-scheduled:{kind}"
FLUSH_DELAY = 1.0  # seconds between a view and the flush that writes it (at most)
VIEWS = _Batches(VIEW_BUFFER, VIEW_BATCH, VIEW_BATCHES)

# A read of an item in one command (one round trip, one reply to parse): count the view, set
# the flush mark, read the counts hash and the body version. One EVALSHA costs the web worker
# less than a four-command pipeline (packing and parsing four commands was most of the
# `view_and_read` share of the post_get profile, docs/performance.md).
#
# What a view is (docs/contract.md, VIEW_DEDUP_SECONDS): one viewer's reads of one item count
# once per window. KEYS[5] marks "this viewer saw this item" for ARGV[4] seconds (SET NX EX: the
# first read in the window sets it and counts; the others find it and do not); a window of 0
# counts every read and touches no mark.
_VIEW_AND_READ = """
local pending = 0
local first = false
if ARGV[1] == '1' and (ARGV[4] == '0' or redis.call('SET', KEYS[5], 1, 'NX', 'EX', ARGV[4])) then
  pending = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  first = redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[3])
elseif ARGV[1] == '1' then
  pending = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or 0)
end
local counts = redis.call('HMGET', KEYS[3], FIELDS)
local version = redis.call('GET', KEYS[4])
return {pending, first and 1 or 0, counts, version or 0}
""".replace("FIELDS", ", ".join(f"'{field}'" for field in COUNT_FIELDS))
# The reads in flight in one process share a pipeline (group commit, redis_batch.py): in
# `make bench` a read's own EVALSHA round trip was a fifth of its CPU (docs/performance.md).
_view_and_read = ScriptBatcher(_VIEW_AND_READ)
VIEW_SEEN = "synspirit:views:seen:{kind}:{id}:{viewer}"  # this viewer's read counted (expires)


def view_and_read(redis, kind: str, content_id: int, count: bool = True,
                  viewer: str = "", dedup_seconds: int = 0) -> tuple[int, bool, dict | None, int]:
    """One round trip for a read of an item: buffer the view (unless count=False, or `viewer`
    already had a view of it counted in the last `dedup_seconds`), and read the item's counts
    hash and body version (item_cache.py). Returns (views still buffered, schedule a flush?,
    counts as PostgreSQL has them or None, version). At most one flush per kind is scheduled
    per FLUSH_DELAY, so views never cost a task each."""
    pending, first, raw, version = _view_and_read(
        redis,
        [VIEW_BUFFER.format(kind=kind), VIEW_FLUSH_SCHEDULED.format(kind=kind),
         counts_key(kind, content_id), version_key(kind, content_id),
         VIEW_SEEN.format(kind=kind, id=content_id, viewer=viewer)],
        ["1" if count else "0", str(content_id), int(FLUSH_DELAY * 1000), int(dedup_seconds)])
    raw = list(raw) + [None] * (len(COUNT_FIELDS) - len(raw))  # trailing nils are dropped
    return int(pending), bool(first), parse_counts(raw), int(version or 0)


def record_view(redis, kind: str, content_id: int) -> tuple[int, bool]:
    """view_and_read without what it reads: (views still buffered, schedule a flush?)."""
    pending, first, _, _ = view_and_read(redis, kind, content_id)
    return pending, first


def pending_views(redis, kind: str, content_id: int) -> int:
    """Views of one item still in the live buffer (not yet flushed)."""
    raw = redis.hget(VIEW_BUFFER.format(kind=kind), str(content_id))
    return int(raw or 0)


def flush_views(redis, session) -> dict[str, dict[int, dict]]:
    """Write buffered views to PostgreSQL in batches, exactly once.

    Each batch's key is inserted into view_batches in the transaction that applies it; a batch
    left behind by a crash between that commit and its deletion from Redis is recognised and
    dropped instead of being applied twice. Returns {kind: {id: counts}} of what changed."""
    lock = redis.lock(VIEW_FLUSH_LOCK, timeout=60, blocking_timeout=5)
    if not lock.acquire():
        return {}
    try:
        for kind in CONTENT_MODELS:
            VIEWS.take(redis, kind, counts_prefix=counts_key(kind, ""))
        changed: dict[str, dict[int, dict]] = {kind: {} for kind in CONTENT_MODELS}

        def apply(kind: str, batch_key: str) -> None:
            views = {int(k): int(v) for k, v in redis.hgetall(batch_key).items()}
            changed[kind].update(_apply_batch(session, kind, batch_key, views, redis))

        VIEWS.drain(redis, CONTENT_MODELS, apply)
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
            RETURNING {_RETURNING}
            """
        ),
        {"ids": list(views), "ns": list(views.values())},
    ).all()
    # Applied batches older than a day can no longer be pending anywhere.
    session.execute(text("DELETE FROM view_batches WHERE applied_at < now() - interval '1 day'"))
    changed = _counts_of(rows)
    _publish_counts(redis, kind, changed)
    session.commit()
    return changed


# --- likes, collects, shares and comments: recounted from their rows -----------------------------

_REACTION_COUNTS = {"likes": "like", "collects": "collect", "shares": "share"}  # -> action


def _recounted(kind: str, item: str) -> dict[str, str]:
    """{column: SQL counting its rows} for the likes, collects, shares and comments counts of a
    post or article; item is the SQL expression of its id. The one home of these queries:
    recount_items and reconcile_content_counts both build on it."""
    fk = f"{kind}_id"
    recounted = {f"{count}_count": f"(SELECT count(*) FROM reactions"
                                   f" WHERE {fk} = {item} AND action = '{action}')"
                 for count, action in _REACTION_COUNTS.items()}
    # A comment a moderator removed is not counted (it stays for the moderation log).
    recounted["comments_count"] = (f"(SELECT count(*) FROM {_comment_table(kind)}"
                                   f" WHERE {fk} = {item} AND removed_at IS NULL)")
    return recounted


def _comment_likes(kind: str, comment: str) -> str:
    """SQL: the number of likes of a comment (comment: the SQL expression of its id)."""
    return f"(SELECT count(*) FROM reactions WHERE {kind}_comment_id = {comment})"


def recount_items(session, kind: str, ids: list[int], redis=None) -> dict[int, dict]:
    """Set likes/collects/shares/comments of these posts (or articles) from their rows, in one
    statement (rows locked in id order, so two of these never deadlock each other), and, given
    redis, their counts hashes. Idempotent: running it twice, or late, gives the same result.
    Returns {id: counts} of the items that exist."""
    table = _content_table(kind)
    set_counts = ", ".join(f"{column} = {sql}"
                           for column, sql in _recounted(kind, "t.id").items())
    rows = session.execute(
        text(
            f"""
            WITH locked AS (SELECT id FROM {table} WHERE id = ANY(CAST(:ids AS integer[]))
                            ORDER BY id FOR UPDATE)
            UPDATE {table} AS t SET {set_counts}
            FROM locked WHERE t.id = locked.id
            RETURNING {_RETURNING}
            """
        ),
        {"ids": list(ids)},
    ).all()
    changed = _counts_of(rows)
    _publish_counts(redis, kind, changed)
    session.commit()
    return changed


def recount_item(session, kind: str, content_id: int, redis=None) -> dict | None:
    """recount_items of one item: its counts, or None when it no longer exists."""
    return recount_items(session, kind, [content_id], redis).get(content_id)


def recount_comment_likes(session, kind: str, comment_id: int) -> tuple[int, int] | None:
    """Set a comment's like count from its rows; returns (parent content id, likes)."""
    row = session.execute(
        text(
            f"""
            UPDATE {_comment_table(kind)} SET likes_count = {_comment_likes(kind, ":id")}
            WHERE id = :id
            RETURNING {kind}_id, likes_count
            """
        ),
        {"id": comment_id},
    ).one_or_none()
    session.commit()
    return None if row is None else (row[0], row[1])


# Recounts of posts/articles, coalesced: a change adds the item's id to a per-kind "dirty" set
# and schedules one count task unless one is already scheduled; the task recounts every dirty
# id in one statement. 64 likes in flight then cost a handful of tasks, not 64 (`make bench`
# likes: the io queue, fed one recount and one notification per like, fell behind the web).
RECOUNT_DIRTY = "synspirit:recount:{kind}"  # set: ids whose counts must be recomputed
RECOUNT_BATCH = "synspirit:recount:batch:{kind}:{token}"  # a dirty set taken by a recount
RECOUNT_BATCHES = "synspirit:recount:batches"  # list of dirty sets taken out, not yet done
RECOUNT_SCHEDULED = "synspirit:recount:scheduled:{kind}"
RECOUNT_SCHEDULED_TTL = 60_000  # ms: a lost task delays recounts by this much at worst
DIRTY = _Batches(RECOUNT_DIRTY, RECOUNT_BATCH, RECOUNT_BATCHES)


def mark_dirty(redis, kind: str, content_id: int) -> bool:
    """Note that an item's counts must be recomputed (one round trip). Returns whether the
    caller must enqueue the count task (none is scheduled and not yet started)."""
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
    mark, dirty = RECOUNT_SCHEDULED.format(kind=kind), RECOUNT_DIRTY.format(kind=kind)
    changed: dict[int, dict] = {}

    def apply(_kind: str, batch_key: str) -> None:
        ids = sorted(int(i) for i in redis.smembers(batch_key))
        if ids:
            done = recount_items(session, kind, ids, redis)
            changed.update(done)
            if on_pass is not None:
                on_pass(done)

    while True:
        DIRTY.take(redis, kind)
        DIRTY.drain(redis, (kind,), apply)
        redis.delete(mark)
        if not redis.exists(dirty):
            return changed
        if not redis.set(mark, 1, nx=True, px=RECOUNT_SCHEDULED_TTL):
            return changed  # a change made after the delete scheduled another task


# --- the periodic safety net ---------------------------------------------------------------------

def reconcile_content_counts(session, kind: str, redis=None) -> dict[int, dict]:
    """Repair every post/article whose cached counts differ from its rows (a count task that
    could not be enqueued, say while the broker restarted). Returns {id: counts} repaired."""
    table = _content_table(kind)
    recounted = _recounted(kind, "i.id")
    columns = ", ".join(recounted)
    cached = ", ".join(f"t.{column}" for column in recounted)
    counted = ", ".join(f"c.{column}" for column in recounted)
    counts = ", ".join(f"{sql} AS {column}" for column, sql in recounted.items())
    # Every item recounted into c; only the rows whose counts differ are updated.
    rows = session.execute(text(
        f"""
        UPDATE {table} AS t SET ({columns}) = ({counted})
        FROM (SELECT i.id, {counts} FROM {table} AS i) AS c
        WHERE t.id = c.id AND ({cached}) IS DISTINCT FROM ({counted})
        RETURNING {_RETURNING}
        """)).all()
    repaired = _counts_of(rows)
    _publish_counts(redis, kind, repaired)
    session.commit()
    return repaired


def reconcile_comment_likes(session, kind: str) -> list[tuple[int, int, int]]:
    """Repair comments whose like count differs from their likes: [(parent, id, likes)]."""
    table = _comment_table(kind)
    rows = session.execute(text(
        f"""
        UPDATE {table} AS t SET likes_count = c.likes
        FROM (SELECT m.id, {_comment_likes(kind, "m.id")} AS likes FROM {table} AS m) AS c
        WHERE t.id = c.id AND t.likes_count <> c.likes
        RETURNING t.{kind}_id, t.id, t.likes_count
        """)).all()
    session.commit()
    return [tuple(row) for row in rows]
