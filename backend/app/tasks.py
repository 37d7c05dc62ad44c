"""Celery tasks: thin wrappers that call the logic in counting, rendering and ranking and
push what changed to Socket.IO clients through the Redis message queue."""
from __future__ import annotations

from celery import shared_task
from flask import current_app
from sqlalchemy import text

from . import counting, item_cache, ranking, rendering
from .celery_config import IDEMPOTENT, RETRY_KWARGS
from .extensions import db, redis_client
from .realtime import emit

COUNTER = {**RETRY_KWARGS, **IDEMPOTENT}


def _emit_counts(kind: str, changed: dict[int, dict]) -> None:
    for content_id, counts in changed.items():
        emit.counts(kind, content_id, counts)


def _update_counts(kind: str, content_id: int | None) -> int:
    """What update_post_counts and update_article_counts do; returns how many items changed."""
    if content_id is not None:  # one item named by the caller
        counts = counting.recount_item(db.session, kind, content_id, redis_client())
        if counts is None:
            return 0
        _emit_counts(kind, {content_id: counts})
        return 1
    # Every item marked dirty: what dispatch.recount enqueues. The new counts are emitted after
    # each pass, not only at the end.
    return len(counting.recount_dirty(redis_client(), db.session, kind,
                                      on_pass=lambda changed: _emit_counts(kind, changed)))


def _comment_likes(kind: str, comment_id: int) -> None:
    result = counting.recount_comment_likes(db.session, kind, comment_id)
    if result is not None:
        parent_id, likes = result
        emit.comment_counts(kind, parent_id, comment_id, likes)


@shared_task(**COUNTER)
def update_post_counts(post_id: int | None = None) -> int:
    """Likes, collects, shares and comments of posts, from their rows: of every post marked
    dirty since the last run (counting.mark_dirty; dispatch.recount enqueues this without an
    id and at most one is scheduled at a time), in one statement; or of post_id alone."""
    return _update_counts("post", post_id)


@shared_task(**COUNTER)
def update_article_counts(article_id: int | None = None) -> int:
    """update_post_counts for articles."""
    return _update_counts("article", article_id)


@shared_task(**COUNTER)
def update_post_comment_likes_count(comment_id: int) -> None:
    _comment_likes("post", comment_id)


@shared_task(**COUNTER)
def update_article_comment_likes_count(comment_id: int) -> None:
    _comment_likes("article", comment_id)


@shared_task(**COUNTER)
def flush_view_counts() -> int:
    """Write every buffered view (posts and articles) to PostgreSQL, exactly once. Enqueued by
    the first view after a flush (content/routes.py, within counting.FLUSH_DELAY) and sent by
    beat every 10 s as a safety net (schedule.py)."""
    changed = counting.flush_views(redis_client(), db.session)
    for kind, items in changed.items():
        _emit_counts(kind, items)
    return sum(len(items) for items in changed.values())


# Task names that the web sent before this release, still registered so that the messages it
# queued before a deploy run on the workers of this one (a worker drops a message of a task it
# does not know; a dropped recount would also leave its scheduled mark set for up to
# RECOUNT_SCHEDULED_TTL, holding back every recount of the kind). Nothing in this release sends
# them: the web enqueues update_<kind>_counts and flush_view_counts.

@shared_task(name="app.tasks.recount_dirty", **COUNTER)
def recount_dirty_of_earlier_release(kind: str) -> int:
    return _update_counts(kind, None)


@shared_task(**COUNTER)
def update_post_view_count(post_id: int | None = None) -> int:
    """Flushes every buffered view, as flush_view_counts (post_id is not used)."""
    return flush_view_counts()


@shared_task(**COUNTER)
def update_article_view_count(article_id: int | None = None) -> int:
    """Flushes every buffered view, as flush_view_counts (article_id is not used)."""
    return flush_view_counts()


@shared_task(**COUNTER)
def render_article(article_id: int) -> bool:
    """Markdown -> sanitized HTML, excerpt, reading time (cpu queue). A render of content that
    changed meanwhile is discarded; the change enqueued its own render."""
    row = db.session.execute(
        text("SELECT content, revision FROM articles WHERE id = :id"), {"id": article_id}
    ).one_or_none()
    if row is None:
        return False
    content, revision = row
    rendered = rendering.render_article(content)
    done = db.session.execute(
        text(
            """UPDATE articles SET content_html = :content_html, excerpt = :excerpt,
                      reading_minutes = :reading_minutes
               WHERE id = :id AND revision = :revision"""
        ),
        {**rendered, "id": article_id, "revision": revision},
    ).rowcount
    db.session.commit()
    if done:
        item_cache.bump_version(redis_client(), "article", article_id)  # reload the cached body
        emit.rendered(article_id)
    return bool(done)


@shared_task(**COUNTER)
def recompute_hot_scores() -> int:
    """Front-page hot scores of recent posts and articles (cpu queue, every minute); then every
    instance reloads the lists' first pages (content/pages.py) in the new order."""
    scored = sum(ranking.recompute_hot_scores(db.session, kind) for kind in ("post", "article"))
    item_cache.bump_list_version(redis_client(), "post", "article")
    return scored


@shared_task(**COUNTER)
def reconcile_counts() -> int:
    """Periodic safety net: repair any count that differs from its rows (every minute)."""
    repaired = 0
    for kind in ("post", "article"):
        changed = counting.reconcile_content_counts(db.session, kind, redis_client())
        _emit_counts(kind, changed)
        repaired += len(changed)
        for parent_id, comment_id, likes in counting.reconcile_comment_likes(db.session, kind):
            emit.comment_counts(kind, parent_id, comment_id, likes)
            repaired += 1
    return repaired


@shared_task(**COUNTER)
def render_pending_articles() -> int:
    """Periodic safety net: render articles whose render task could not be enqueued."""
    ids = db.session.execute(text(
        """SELECT id FROM articles WHERE content_html IS NULL
           AND updated_at < now() - interval '30 seconds' ORDER BY id LIMIT 100""")).scalars()
    return sum(render_article(article_id) for article_id in list(ids))


# At most this many notifications deleted per run of prune_notifications: one short
# transaction, whatever the backlog (a site's first run after an upgrade, or after beat was
# away); a larger backlog goes over the next runs, one a minute.
PRUNE_BATCH = 10_000


@shared_task(ignore_result=False, **COUNTER)
def prune_notifications() -> int:
    """Delete read notifications older than NOTIFICATION_RETENTION_DAYS, the oldest first, at
    most PRUNE_BATCH (io queue, every minute); returns how many. Unread ones are kept."""
    deleted = db.session.execute(text(
        """DELETE FROM notifications WHERE id IN (
             SELECT id FROM notifications
             WHERE read AND created_at < now() - make_interval(days => :days)
             ORDER BY created_at LIMIT :batch)"""),
        {"days": current_app.config["NOTIFICATION_RETENTION_DAYS"], "batch": PRUNE_BATCH},
    ).rowcount
    db.session.commit()
    return deleted


# Web instances publish comments and notifications straight to the Socket.IO message queue
# (content/routes.py, actions/routes.py); these two tasks stay registered for the messages an
# earlier release queued before a deploy, and for operators' scripts.
@shared_task(**RETRY_KWARGS)
def broadcast_comment(kind: str, content_id: int, comment: dict) -> None:
    emit.comment(kind, content_id, comment)


@shared_task(**RETRY_KWARGS)
def notify_user(user_id: int, notification: dict) -> None:
    emit.notification(user_id, notification)
