"""Lists that cost the same on page 1 and page 100,000: keyset (cursor) pagination and a total
that never counts a whole table.

- Order: every list is ordered by a key that ends with the id, so no two rows tie: `new` by
  (created_at, id) descending, `hot` by (hot_score, id) descending, comments by id ascending.
  Each order has its index (models.py, migration 0006; comments: (post_id, id)).
- Cursor: `next_cursor` names the last row of a page; `?cursor=` returns the rows after it:
  `WHERE (hot_score, id) < (:score, :id) ORDER BY hot_score DESC, id DESC LIMIT per_page + 1`,
  one index scan that reads per_page + 1 rows wherever the cursor points (the extra row says
  whether there is a next page). The cursor is opaque to clients: base64url of the sort's tag
  and the row's key ("h:<score as float.hex>:<id>", "n:<created_at in microseconds>:<id>",
  "c:<id>"; search's, content/search.py: "s:<rank as float.hex>:<id>"); one of another sort,
  or anything else that does not decode, is a 422.
- Page numbers: `page` still works for the first MAX_OFFSET_ROWS items (page x per_page <=
  1,000; validation.py), an OFFSET that stays bounded whatever the table's size.
- Total: exact while the list has at most EXACT_UP_TO items (a count that stops at
  EXACT_UP_TO + 1, an index-only scan of at most that many entries); above, PostgreSQL's own
  estimate of the table's rows (pg_class.reltuples scaled to the table's current size, as the
  planner does), cached per process for ESTIMATE_TTL seconds, and `total_exact` is false.
"""
from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import redis.exceptions
from flask import current_app
from sqlalchemy import Integer, bindparam, cast, func, literal, select, text, tuple_

from .. import item_cache, rawdb
from ..errors import APIError
from ..extensions import db, redis_client
from ..validation import MAX_ID

log = logging.getLogger(__name__)

EXACT_UP_TO = 1000
ESTIMATE_TTL = 10.0  # seconds
CURSOR_MAX_LENGTH = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_TAGS = {"new": "n", "hot": "h", "comments": "c", "search": "s"}


# --- cursors -------------------------------------------------------------------------------------

def encode_cursor(sort: str, row) -> str:
    """The cursor that points just after `row` in the order `sort`."""
    if sort == "hot":
        raw = f"h:{float(row.hot_score).hex()}:{row.id}"
    elif sort == "search":  # GET /api/search (content/search.py): rank, then id
        raw = f"s:{float(row.rank).hex()}:{row.id}"
    elif sort == "new":
        raw = f"n:{(row.created_at - _EPOCH) // _US}:{row.id}"
    else:
        raw = f"c:{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _bad_cursor(why: str) -> APIError:
    return APIError(422, "validation_error", "invalid input", {"cursor": why})


def _id(text_: str) -> int:
    if not (text_.isascii() and text_.isdigit()) or not 1 <= int(text_) <= MAX_ID:
        raise ValueError("bad id")
    return int(text_)


def decode_cursor(sort: str, cursor: str) -> tuple:
    """The key that `cursor` points after, for the order `sort`; 422 if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise _bad_cursor("not a cursor of this list (use next_cursor as given)") from None
    tag, _, rest = raw.partition(":")
    if tag != _TAGS[sort]:
        raise _bad_cursor(f"not a cursor of this list (sort={sort}); use next_cursor as given")
    try:
        if sort == "comments":
            return (_id(rest),)
        key, _, item_id = rest.partition(":")
        if sort in ("hot", "search"):
            score = float.fromhex(key)
            if not math.isfinite(score):
                raise ValueError("not finite")
            return (score, _id(item_id))
        if not (key.lstrip("-").isascii() and key.lstrip("-").isdigit()):
            raise ValueError("bad time")
        return (_EPOCH + int(key) * _US, _id(item_id))
    except (ValueError, OverflowError):
        raise _bad_cursor("not a cursor of this list (use next_cursor as given)") from None


# --- totals --------------------------------------------------------------------------------------

_estimates: dict[str, tuple[float, float | None]] = {}
_estimates_lock = threading.Lock()

_ESTIMATE_SQL = text("""
    SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
                ELSE c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::int) END
    FROM pg_class c WHERE c.oid = CAST(:table AS regclass)""")


def newest_first(stmt, column, q) -> tuple[list, int | None]:
    """The lists paged by id (notifications, reports, the moderation log): stmt's rows with
    `column` below q.before, highest first, q.limit of them, and the `before` of the next page
    (None on the last: one row more is read to know)."""
    if q.before is not None:
        stmt = stmt.where(column < q.before)
    rows = db.session.scalars(stmt.order_by(column.desc()).limit(q.limit + 1)).all()
    return rows[:q.limit], (rows[q.limit - 1].id if len(rows) > q.limit else None)


def table_estimate(table: str) -> float | None:
    """PostgreSQL's estimate of the table's rows (None before its first ANALYZE or VACUUM),
    read at most every ESTIMATE_TTL seconds per process."""
    now = time.monotonic()
    cached = _estimates.get(table)
    if cached and now - cached[0] < ESTIMATE_TTL:
        return cached[1]
    value = db.session.scalar(_ESTIMATE_SQL, {"table": table})
    with _estimates_lock:
        _estimates[table] = (now, None if value is None else float(value))
    return _estimates[table][1]


def count_up_to(model, where=()) -> int:
    """The rows of model matching where and not removed, counted up to EXACT_UP_TO + 1 at
    most."""
    inner = (select(literal(1)).select_from(model).where(model.removed_at.is_(None), *where)
             .limit(EXACT_UP_TO + 1))
    return db.session.scalar(select(func.count()).select_from(inner.subquery()))


def total(model, where=(), estimate=None) -> tuple[int, bool]:
    """(total, exact). `estimate()` gives the list's size when it is above EXACT_UP_TO;
    without a where clause, the table's estimate is tried first, so that a large table is
    never counted at all."""
    if not where:
        est = table_estimate(model.__tablename__)
        if est is not None and est > 10 * EXACT_UP_TO:
            return round(est), False
        estimate = estimate or (lambda: est)
    n = count_up_to(model, where)
    if n <= EXACT_UP_TO:
        return n, True
    return max(n, round((estimate and estimate()) or 0)), False


# --- one page ------------------------------------------------------------------------------------
# Columns, not ORM objects: a page of 20 posts through the ORM (21 instances, their authors
# joined, identity map) cost as much web CPU again as the rest of the request (`make bench`,
# docs/performance.md). The statements are built once per list and order, with bind
# parameters, so SQLAlchemy compiles each once.

_CONTENT_COLUMNS = ("id", "title", "content", "created_at", "updated_at", "views_count",
                    "likes_count", "collects_count", "shares_count", "comments_count",
                    "hot_score")
_ARTICLE_COLUMNS = ("content_html", "excerpt", "reading_minutes")
_COMMENT_COLUMNS = ("id", "content", "created_at", "likes_count")
_statements: dict[tuple, object] = {}


def _iso(value):
    return value.isoformat() if value else None


def _content_row(article: bool):
    def serialize(r) -> dict:
        out = {"id": r[0], "title": r[1], "content": r[2],
               "author": {"id": r[-2], "username": r[-1]},
               "created_at": _iso(r[3]), "updated_at": _iso(r[4]),
               "counts": {"views": r[5], "likes": r[6], "collects": r[7], "shares": r[8],
                          "comments": r[9]}}
        if article:
            out["content_html"], out["excerpt"], out["reading_minutes"] = r[11], r[12], r[13]
        return out
    return serialize


def _comment_row(r) -> dict:
    return {"id": r[0], "content": r[1], "author": {"id": r[-2], "username": r[-1]},
            "created_at": _iso(r[2]), "counts": {"likes": r[3]}}


def _statement(model, sort: str, parent: str | None, keyset: bool, offset: bool):
    """SELECT the page's columns and author, after the cursor (:k0, :k1) if keyset, under the
    parent item (:parent) if any, ORDER BY the sort's key, LIMIT :n [OFFSET :skip]."""
    key = (model, sort, parent, keyset, offset)
    stmt = _statements.get(key)
    if stmt is not None:
        return stmt
    from ..models import User

    if sort == "comments":
        names, order, desc = _COMMENT_COLUMNS, (model.id,), False
    else:
        names = _CONTENT_COLUMNS + (_ARTICLE_COLUMNS if hasattr(model, "content_html") else ())
        order = (model.hot_score, model.id) if sort == "hot" else (model.created_at, model.id)
        desc = True
    stmt = (select(*(getattr(model, n) for n in names), User.id, User.username)
            .join(User, User.id == model.author_id)
            .where(model.removed_at.is_(None)))  # removed by a moderator: in no list
    if parent:
        stmt = stmt.where(getattr(model, parent) == bindparam("parent"))
    if keyset:
        # CAST: the driver sends a float as a numeric literal
        params = [cast(bindparam(f"k{i}"), c.type) for i, c in enumerate(order)]
        bound, value = ((tuple_(*order), tuple_(*params)) if len(order) > 1
                        else (order[0], params[0]))
        stmt = stmt.where(bound < value if desc else bound > value)
    stmt = stmt.order_by(*(c.desc() if desc else c.asc() for c in order))
    stmt = stmt.limit(bindparam("n", type_=Integer))
    if offset:
        stmt = stmt.offset(bindparam("skip", type_=Integer))
    _statements[key] = stmt
    return stmt


_sql: dict[object, str] = {}


def _fetch(stmt, params: dict) -> list[tuple]:
    """The rows of stmt, compiled once, through a pooled DBAPI connection (rawdb)."""
    sql = _sql.get(stmt)
    if sql is None:
        sql = _sql[stmt] = str(stmt.compile(db.engine))
    return rawdb.fetch(sql, params)


def _last(sort: str, r):
    if sort == "hot":
        return SimpleNamespace(hot_score=r[10], id=r[0])
    if sort == "new":
        return SimpleNamespace(created_at=r[3], id=r[0])
    return SimpleNamespace(id=r[0])


# --- the first pages, kept ready ----------------------------------------------------------------
# The front page is the hottest request a community has. Each instance keeps the first
# FRONT_ROWS rows of each list (posts and articles, new and hot) serialized in memory, under the
# kind's list version in Redis (item_cache.LIST_VERSION_KEY), which every change that can move
# them bumps: a new item (create), an edit, a delete or a finished render (bump_version), new
# hot scores (the ranking task, every minute). A first page then costs one Redis GET, like a
# single post's read, and no PostgreSQL; counts in it are at most FRONT_TTL seconds older than
# PostgreSQL's. Without Redis, lists are read from PostgreSQL.

FRONT_ROWS = 100
FRONT_TTL = 5.0  # seconds


def _load_front(model, sort: str) -> tuple[list, list]:
    rows = _fetch(_statement(model, sort, None, False, False), {"n": FRONT_ROWS + 1})
    serialize = _content_row(hasattr(model, "content_html"))
    return [serialize(r) for r in rows], [_last(sort, r) for r in rows]


def _front_page(model, kind: str, sort: str, q) -> tuple[list, object] | None:
    """(items, the row after which the next page starts or None) from the first pages kept
    ready, or None when Redis cannot say which version is current."""
    try:
        version = redis_client().get(item_cache.LIST_VERSION_KEY.format(kind=kind))
    except (redis.exceptions.RedisError, OSError) as e:
        log.warning("list version of %s unknown, reading PostgreSQL: %s", kind, e)
        return None
    key, front = (kind, sort), current_app.extensions["synspirit_front_pages"]
    entry = front.get(key, version)
    if entry is None:
        entry = front.load(key, version, lambda: _load_front(model, sort))
    items, lasts = entry
    start, end = (q.page - 1) * q.per_page, q.page * q.per_page
    return items[start:end], (lasts[end - 1] if len(items) > end else None)


def page(model, sort: str, q, parent: tuple[str, int] | None = None, estimate=None,
         kind: str | None = None) -> dict:
    """One page of `model` in the order `sort` ("new", "hot" or "comments"; comments under
    parent = (column, item id); posts and articles name their kind), from q's cursor or page
    number, with next_cursor and the total."""
    front = (kind is not None and q.cursor is None and q.page * q.per_page <= FRONT_ROWS
             and _front_page(model, kind, sort, q))
    if front:
        items, last = front
        count, exact = total(model, (), None)
        return {"items": items, "page": q.page, "per_page": q.per_page,
                "next_cursor": encode_cursor(sort, last) if last is not None else None,
                "total": count, "total_exact": exact}
    params = {"n": q.per_page + 1}
    if q.cursor is not None:
        params.update((f"k{i}", v) for i, v in enumerate(decode_cursor(sort, q.cursor)))
    if q.page > 1:
        params["skip"] = (q.page - 1) * q.per_page
    where = ()
    if parent:
        params["parent"] = parent[1]
        where = (getattr(model, parent[0]) == parent[1],)
    stmt = _statement(model, sort, parent and parent[0], q.cursor is not None, q.page > 1)
    rows = _fetch(stmt, params)
    more = len(rows) > q.per_page
    rows = rows[:q.per_page]
    serialize = (_comment_row if sort == "comments"
                 else _content_row(hasattr(model, "content_html")))
    count, exact = total(model, where, estimate)
    return {"items": [serialize(r) for r in rows], "page": q.page, "per_page": q.per_page,
            "next_cursor": encode_cursor(sort, _last(sort, rows[-1])) if more else None,
            "total": count, "total_exact": exact}
