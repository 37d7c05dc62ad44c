"""Enqueueing after a commit, and which Celery task keeps which count."""
from __future__ import annotations

import contextlib
import logging

import redis.exceptions as redis_exceptions
from kombu.exceptions import OperationalError as BrokerError

from . import counting, tasks
from .extensions import redis_client

log = logging.getLogger(__name__)

COUNT_TASK = {
    "post": tasks.update_post_counts,
    "article": tasks.update_article_counts,
    "post_comment": tasks.update_post_comment_likes_count,
    "article_comment": tasks.update_article_comment_likes_count,
}
BROKER_ERRORS = (BrokerError, redis_exceptions.RedisError, OSError)


def enqueue(task, *args, **options) -> bool:
    """Enqueue a task after the change it follows was committed.

    The change is stored, so a broker that is away must not turn it into an error that the
    client would retry (a retried comment would be posted twice). The failure is logged and
    the periodic sweeps (reconcile_counts, render_pending_articles) catch up."""
    try:
        task.apply_async(args, **options)
        return True
    except BROKER_ERRORS as e:
        log.warning("could not enqueue %s%r: %s", task.name, args, e)
    except AttributeError:
        # kombu publishing on a channel that a failed publish closed meanwhile ("'NoneType'
        # object has no attribute 'client'"), seen while the master failed over
        # (test_sentinel_failover.py, SIGSTOP): the change is stored all the same.
        log.exception("could not enqueue %s%r", task.name, args)
    return False


def recount(target_type: str, target_id: int) -> None:
    """Recount a target whose relations changed (idempotent: recounts from the rows).

    Posts and articles are coalesced (counting.mark_dirty): their count task, enqueued without
    an id, recounts every item marked since its last run. Comments get a task each."""
    task = COUNT_TASK[target_type]
    if target_type not in ("post", "article"):
        enqueue(task, target_id)
        return
    redis = redis_client()
    try:
        schedule = counting.mark_dirty(redis, target_type, target_id)
    except (redis_exceptions.RedisError, OSError) as e:
        # Same as a broker that is away: the periodic reconcile_counts sweep catches up.
        log.warning("could not mark %s %s for a recount: %s", target_type, target_id, e)
        return
    if schedule and not enqueue(task):
        with contextlib.suppress(redis_exceptions.RedisError, OSError):
            counting.unschedule(redis, target_type)


def flush_views_soon() -> None:
    """After the first view since the last flush (counting.view_and_read says which): write
    the buffered views of every item within counting.FLUSH_DELAY, in one task."""
    enqueue(tasks.flush_view_counts, countdown=counting.FLUSH_DELAY)
