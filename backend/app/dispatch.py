"""Which Celery task keeps which count, and enqueueing after a commit."""
from __future__ import annotations

import logging

import redis.exceptions
from kombu.exceptions import OperationalError as BrokerError

from . import tasks

log = logging.getLogger(__name__)

COUNT_TASK = {
    "post": tasks.update_post_counts,
    "article": tasks.update_article_counts,
    "post_comment": tasks.update_post_comment_likes_count,
    "article_comment": tasks.update_article_comment_likes_count,
}
VIEW_TASK = {"post": tasks.update_post_view_count, "article": tasks.update_article_view_count}
BROKER_ERRORS = (BrokerError, redis.exceptions.RedisError, OSError)


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
        return False


def recount(target_type: str, target_id: int) -> None:
    """Recount a target whose relations changed (idempotent: recounts from the rows)."""
    enqueue(COUNT_TASK[target_type], target_id)
