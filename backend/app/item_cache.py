"""Reading a post or article without PostgreSQL: a per-instance cache of the serialized item
(without its counts), checked against a version number in Redis, and its counts from a Redis
hash, all in the same pipeline that counts the view.

- Body: kept in this instance for up to ITEM_CACHE_TTL seconds and served as long as the
  item's version in Redis (`synspirit:item-version:<kind>:<id>`) is the one it was loaded
  under. PATCH, DELETE and a finished article render bump the version (`bump_version`), so
  every instance reloads the item on its next read.
- Counts: `synspirit:counts:<kind>:<id>` holds what PostgreSQL holds (views flushed so far,
  likes, collects, shares, comments). The count tasks and the view flush write it while they
  still hold the row's lock, right before they commit (counting.py), so its writes come in the
  row's commit order. A reader that had to go to PostgreSQL fills it only if it is absent.
  It expires after COUNTS_TTL, which bounds any lag left by a lost write.
- Loading: one greenlet per instance loads a missing item from PostgreSQL; the others that
  want it meanwhile wait for that load (single flight), so an expiring hot item costs one read,
  not one per request in flight.

`make bench` (docs/performance.md) chose this: a cached-post read through the ORM plus a pool
checkout cost more than the rest of the request, and 64 requests missing at once opened and
closed pool connections on every expiry.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

COUNTS_KEY = "synspirit:counts:{kind}:{id}"
VERSION_KEY = "synspirit:item-version:{kind}:{id}"
# Bumped by every change that can change a list's first page: a new, changed or deleted item,
# a finished render, new hot scores. Each instance keeps the first page of each list ready
# under this version (content/pages.py).
LIST_VERSION_KEY = "synspirit:list-version:{kind}"
COUNT_FIELDS = ("views", "likes", "collects", "shares", "comments")
COUNTS_TTL = 300  # seconds; refreshed by every write
VERSION_TTL = 7 * 86400  # a version older than any cached body can be forgotten

# HSET + EXPIRE only when the hash is absent: a reader's copy from PostgreSQL never overwrites
# what a count task or a flush wrote meanwhile.
_FILL_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def counts_key(kind: str, item_id: int) -> str:
    return COUNTS_KEY.format(kind=kind, id=item_id)


def version_key(kind: str, item_id: int) -> str:
    return VERSION_KEY.format(kind=kind, id=item_id)


def parse_counts(raw: list) -> dict | None:
    """HMGET of COUNT_FIELDS -> counts, or None when the hash is absent or incomplete."""
    if any(v is None for v in raw):
        return None
    return {k: int(v) for k, v in zip(COUNT_FIELDS, raw, strict=True)}


def store_counts(pipe_or_redis, kind: str, item_id: int, counts: dict) -> None:
    """Write an item's counts (all fields) as PostgreSQL has them; a pipeline is fine."""
    key = counts_key(kind, item_id)
    pipe_or_redis.hset(key, mapping={k: int(counts[k]) for k in COUNT_FIELDS})
    pipe_or_redis.expire(key, COUNTS_TTL)


def fill_counts(redis, kind: str, item_id: int, counts: dict) -> None:
    args = [COUNTS_TTL]
    for k in COUNT_FIELDS:
        args += [k, int(counts[k])]
    redis.register_script(_FILL_IF_ABSENT)(keys=[counts_key(kind, item_id)], args=args)


def bump_version(redis, kind: str, item_id: int) -> None:
    """After a committed change of an item's body: every instance reloads it, and the first
    pages of its lists."""
    pipe = redis.pipeline(transaction=False)
    pipe.incr(version_key(kind, item_id))
    pipe.expire(version_key(kind, item_id), VERSION_TTL)
    pipe.incr(LIST_VERSION_KEY.format(kind=kind))
    pipe.execute()


def bump_list_version(redis, *kinds: str) -> None:
    """After a committed change of a list's order or members (a new item, new hot scores):
    every instance reloads the first pages of the lists of these kinds."""
    pipe = redis.pipeline(transaction=False)
    for kind in kinds:
        pipe.incr(LIST_VERSION_KEY.format(kind=kind))
    pipe.execute()


MISSING = object()  # what a load returns for an item that does not exist


class ItemCache:
    """Bounded, expiring, single-flight cache: key -> (version, value).

    Greenlet-safe under gevent (the gunicorn worker monkey-patches threading) and thread-safe
    without it."""

    def __init__(self, maxsize: int, ttl: float, wait_timeout: float = 10.0):
        self.maxsize, self.ttl, self.wait_timeout = maxsize, ttl, wait_timeout
        self._data: OrderedDict = OrderedDict()  # key -> (expires_at, version, value)
        self._lock = threading.Lock()
        self._loading: dict = {}  # key -> [threading.Event, result]
        self.loads = 0  # loads performed (tests and the bench read it)

    def get(self, key, version):
        """The value cached for key under this version, else None."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            expires, ver, value = entry
            if expires < time.monotonic() or ver != version:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def __contains__(self, key) -> bool:
        """Whether some version of key is cached (expired or not)."""
        return key in self._data

    def put(self, key, version, value) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, version, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def pop(self, key) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def load(self, key, version, loader):
        """loader() -> value (or MISSING), run once for all callers wanting key at once.
        Caches the value under version (read before the load, so a change committed during
        the load leaves an entry the next reader discards)."""
        with self._lock:
            flight = self._loading.get(key)
            owner = flight is None
            if owner:
                flight = self._loading[key] = [threading.Event(), None]
        if not owner:
            if flight[0].wait(self.wait_timeout) and flight[1] is not None:
                return flight[1]
            return loader()  # the load failed or hangs: do our own
        try:
            value = loader()
            if value is not MISSING:
                self.put(key, version, value)
            flight[1] = value
            self.loads += 1
            return value
        finally:
            with self._lock:
                self._loading.pop(key, None)
            flight[0].set()
