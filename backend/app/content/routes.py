"""Posts and articles: the same routes for both kinds, under /api/posts and /api/articles.

Each kind has its blueprint (`posts`, `articles`). Each view function below serves both: it is
registered on both blueprints by the two route decorators above it, which give it the kind
(`defaults`), so its endpoints are `posts.<function>` and `articles.<function>`."""
from __future__ import annotations

import ipaddress
import logging
from types import SimpleNamespace

import redis.exceptions
from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy.exc import IntegrityError

from .. import counting, item_cache, rawdb, tasks
from ..auth.security import bearer_token, login_required, read_token
from ..dispatch import enqueue, flush_views_soon, recount
from ..errors import APIError, not_found
from ..extensions import db, redis_client
from ..models import COMMENT_MODELS, CONTENT_MODELS
from ..rate_limits import write_per_user
from ..realtime import emit
from ..roles import staff_request
from ..serializers import comment as comment_json
from ..serializers import content as content_json
from ..serializers import notification as notification_json
from ..serializers import user_public
from ..validation import (
    MAX_ID,
    CommentCreate,
    ContentCreate,
    ContentUpdate,
    ListQuery,
    PageQuery,
    json_body,
    query,
)
from . import pages

log = logging.getLogger(__name__)

posts = Blueprint("posts", __name__, url_prefix="/api/posts")
articles = Blueprint("articles", __name__, url_prefix="/api/articles")
POST, ARTICLE = {"kind": "post"}, {"kind": "article"}  # the `defaults` of each blueprint's rules


# --- helpers -------------------------------------------------------------------------------------

def _load(kind: str, item_id: int):
    """The item, or 404: also when a moderator removed it, but for staff."""
    item = db.session.get(CONTENT_MODELS[kind], item_id) if item_id <= MAX_ID else None
    if item is None or (item.removed_at is not None and not staff_request()):
        raise not_found(kind)
    return item


def _load_own(kind: str, item_id: int):
    item = _load(kind, item_id)
    if item.author_id != g.user.id:
        raise APIError(403, "forbidden", f"only the author may change this {kind}")
    return item


def _viewer() -> str:
    """Who reads, for counting one view per viewer and window (VIEW_DEDUP_SECONDS): the user of
    a validly signed token (no database: a revoked token still names its user), else the client
    address as ProxyFix gives it; an IPv6 client by its /64, the block one host is usually
    given, so that rotating addresses inside it does not add views."""
    claims = read_token(bearer_token())
    if claims is not None:
        return f"u{claims.uid}"
    address = request.remote_addr or ""
    if ":" in address:
        try:
            return "n" + str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
        except ValueError:
            pass
    return "a" + address


def _item_cache() -> item_cache.ItemCache:
    return current_app.extensions["synspirit_item_cache"]


def _load_entry(kind: str, item_id: int):
    """(body without counts, counts) from PostgreSQL, or MISSING (also once removed)."""
    item = db.session.get(CONTENT_MODELS[kind], item_id)
    if item is None or item.removed_at is not None:
        return item_cache.MISSING
    body = content_json(item, kind)
    return body, body.pop("counts")


def _changed(kind: str, item_id: int) -> None:
    """After a committed edit or delete: this instance and every other reload the item."""
    _item_cache().pop((kind, item_id))
    try:
        item_cache.bump_version(redis_client(), kind, item_id)
    except (redis.exceptions.RedisError, OSError) as e:
        # Other instances serve the old body until their copy expires (ITEM_CACHE_TTL).
        log.warning("could not bump the version of %s %s: %s", kind, item_id, e)


# --- posts and articles --------------------------------------------------------------------------

@posts.post("", defaults=POST)
@articles.post("", defaults=ARTICLE)
@login_required
@write_per_user
def create(kind: str):
    body = json_body(ContentCreate)
    item = CONTENT_MODELS[kind](title=body.title, content=body.content, author_id=g.user.id)
    db.session.add(item)
    db.session.commit()
    data = content_json(item, kind, author=g.user)
    db.session.remove()  # give the connection back before talking to Redis
    try:
        item_cache.bump_list_version(redis_client(), kind)  # on every instance's first pages
    except (redis.exceptions.RedisError, OSError) as e:
        # Other instances list it once their first pages expire (pages.FRONT_TTL).
        log.warning("could not bump the list version of %s: %s", kind, e)
    if kind == "article":
        enqueue(tasks.render_article, data["id"])
    return jsonify(data), 201


@posts.get("", defaults=POST)
@articles.get("", defaults=ARTICLE)
def index(kind: str):
    q = query(ListQuery)
    return jsonify(pages.page(CONTENT_MODELS[kind], q.sort, q, kind=kind))


@posts.get("/<int:item_id>", defaults=POST)
@articles.get("/<int:item_id>", defaults=ARTICLE)
def show(kind: str, item_id: int):
    # A hit costs one Redis round trip (count the view, read the counts hash and the body's
    # version) and no PostgreSQL; see item_cache.py.
    if item_id > MAX_ID:
        raise not_found(kind)
    key, items, rc = (kind, item_id), _item_cache(), redis_client()
    try:
        # The view is counted before we know the item exists: a view of a missing id is
        # dropped by the flush (its UPDATE matches no row), and a read costs one round trip.
        dedup = current_app.config["VIEW_DEDUP_SECONDS"]
        pending, schedule, counts, version = counting.view_and_read(
            rc, kind, item_id, viewer=_viewer() if dedup else "", dedup_seconds=dedup)
    except (redis.exceptions.RedisError, OSError) as e:
        # Reading must not fail because Redis is away; this view is not counted.
        log.warning("view of %s %s not counted: %s", kind, item_id, e)
        entry = _load_entry(kind, item_id)
        db.session.remove()
        if entry is item_cache.MISSING:
            return _removed_for_staff(kind, item_id)
        return jsonify({**entry[0], "counts": entry[1]})
    entry = items.get(key, version) if counts is not None else None
    if entry is None:
        entry = items.load(key, version, lambda: _load_entry(kind, item_id))
        db.session.remove()  # give the connection back before talking to Redis again
        if entry is item_cache.MISSING:
            return _removed_for_staff(kind, item_id)
        if counts is None:
            counts = entry[1]
            try:
                item_cache.fill_counts(rc, kind, item_id, counts)
            except (redis.exceptions.RedisError, OSError) as e:
                log.warning("counts of %s %s not cached: %s", kind, item_id, e)
    if schedule:
        flush_views_soon()
    return jsonify({**entry[0], "counts": {**counts, "views": counts["views"] + pending}})


def _removed_for_staff(kind: str, item_id: int):
    """A missing item is 404; one a moderator removed is shown to staff, marked `removed`."""
    item = _load(kind, item_id)
    return jsonify({**content_json(item, kind), "removed": True})


@posts.patch("/<int:item_id>", defaults=POST)
@articles.patch("/<int:item_id>", defaults=ARTICLE)
@login_required
@write_per_user
def update(kind: str, item_id: int):
    body = json_body(ContentUpdate)
    if body.title is None and body.content is None:
        raise APIError(422, "validation_error", "nothing to update",
                       {"body": "give title and/or content"})
    item = _load_own(kind, item_id)
    if body.title is not None:
        item.title = body.title
    rerender = kind == "article" and body.content is not None and body.content != item.content
    if body.content is not None:
        item.content = body.content
    if rerender:
        item.revision += 1
        item.content_html = item.excerpt = item.reading_minutes = None
    db.session.commit()
    _changed(kind, item_id)
    if rerender:
        enqueue(tasks.render_article, item.id)
    return jsonify(content_json(item, kind))


@posts.delete("/<int:item_id>", defaults=POST)
@articles.delete("/<int:item_id>", defaults=ARTICLE)
@login_required
@write_per_user
def delete(kind: str, item_id: int):
    db.session.delete(_load_own(kind, item_id))  # comments and reactions go with it (cascade)
    db.session.commit()
    _changed(kind, item_id)
    return "", 204


# --- their comments ------------------------------------------------------------------------------

# The parent's author, the new comment and, unless they are the same person, the parent's
# author's notification of it, in one statement and one commit (rawdb): no comment without its
# parent (no row when there is none). A parent deleted meanwhile breaks the foreign key:
# IntegrityError.
_INSERT_COMMENT = """
WITH parent AS (SELECT author_id FROM {parents}
                WHERE id = %(parent_id)s AND removed_at IS NULL),
comment AS (
  INSERT INTO {comments} (content, author_id, {parent_column})
  SELECT %(content)s, %(author_id)s, %(parent_id)s FROM parent
  RETURNING id, content, created_at, likes_count),
notification AS (
  INSERT INTO notifications (user_id, actor_id, type, target_type, target_id, comment_id)
  SELECT parent.author_id, %(author_id)s, 'comment', %(kind)s, %(parent_id)s, comment.id
  FROM parent, comment WHERE parent.author_id <> %(author_id)s
  RETURNING id, created_at)
SELECT parent.author_id, comment.id, comment.content, comment.created_at, comment.likes_count,
       notification.id, notification.created_at
FROM parent CROSS JOIN comment LEFT JOIN notification ON true
"""


def _insert_comment(kind: str, parent_id: int, content: str) -> SimpleNamespace | None:
    """The comment stored (its columns, owner_id: the parent's author, and notification: the
    one stored for them, or None), or None: no parent."""
    sql = _INSERT_COMMENT.format(parents=CONTENT_MODELS[kind].__tablename__,
                                 comments=COMMENT_MODELS[kind].__tablename__,
                                 parent_column=f"{kind}_id")
    try:
        rows = rawdb.fetch(sql, {"parent_id": parent_id, "content": content,
                                 "author_id": g.user.id, "kind": kind}, commit=True)
    except IntegrityError:
        return None
    if not rows:
        return None
    (owner_id, comment_id, content, created_at, likes_count, notification_id,
     notified_at) = rows[0]
    notification = None if notification_id is None else SimpleNamespace(
        id=notification_id, type="comment", target_type=kind, target_id=parent_id,
        comment_id=comment_id, read=False, created_at=notified_at)
    return SimpleNamespace(owner_id=owner_id, id=comment_id, content=content,
                           created_at=created_at, likes_count=likes_count,
                           notification=notification)


@posts.post("/<int:item_id>/comments", defaults=POST)
@articles.post("/<int:item_id>/comments", defaults=ARTICLE)
@login_required
@write_per_user
def add_comment(kind: str, item_id: int):
    body = json_body(CommentCreate)
    comment = _insert_comment(kind, item_id, body.content) if item_id <= MAX_ID else None
    if comment is None:
        raise not_found(kind)
    owner_id, data = comment.owner_id, comment_json(comment, author=g.user)
    recount(kind, item_id)
    # Published straight to the Socket.IO message queue (one Redis PUBLISH each), as a like's
    # notification is: a Celery task for each cost a broker publish here plus a task on the io
    # worker, a quarter of a comment's web CPU (docs/performance.md); the broker is the same
    # Redis, so a task would not have survived what makes this publish fail.
    # The notification as GET /api/notifications lists it, plus `kind` and `comment` (the
    # comment object) as older clients read them.
    actor = user_public(g.user)
    try:
        emit.comment(kind, item_id, data)
        if comment.notification is not None:
            emit.notification(owner_id, {**notification_json(comment.notification, actor=actor),
                                         "kind": "comment", "comment": data})
    except (redis.exceptions.RedisError, OSError) as e:  # the comment itself is stored
        log.warning("comment %s not pushed live: %s", data["id"], e)
    return jsonify(data), 201


@posts.get("/<int:item_id>/comments", defaults=POST)
@articles.get("/<int:item_id>/comments", defaults=ARTICLE)
def list_comments(kind: str, item_id: int):
    q = query(PageQuery)
    comments_count = _load(kind, item_id).comments_count
    return jsonify(pages.page(COMMENT_MODELS[kind], "comments", q,
                              parent=(f"{kind}_id", item_id), estimate=lambda: comments_count))


@posts.delete("/<int:item_id>/comments/<int:comment_id>", defaults=POST)
@articles.delete("/<int:item_id>/comments/<int:comment_id>", defaults=ARTICLE)
@login_required
@write_per_user
def delete_comment(kind: str, item_id: int, comment_id: int):
    _load(kind, item_id)
    comment = db.session.get(COMMENT_MODELS[kind], comment_id) if comment_id <= MAX_ID else None
    if (comment is None or getattr(comment, f"{kind}_id") != item_id
            or comment.removed_at is not None):
        raise not_found("comment")
    if comment.author_id != g.user.id:
        raise APIError(403, "forbidden", "only the author may delete this comment")
    db.session.delete(comment)
    db.session.commit()
    recount(kind, item_id)
    return "", 204
