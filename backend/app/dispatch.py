"""Which Celery task keeps which count, and enqueueing after a commit."""
from __future__ import annotations

import logging

from . import tasks

log = logging.getLogger(__name__)

COUNT_TASK = {
    "post": tasks.update_post_counts,
    "article": tasks.update_article_counts,
    "post_comment": tasks.update_post_comment_likes_count,
    "article_comment": tasks.update_article_comment_likes_count,
}
VIEW_TASK = {"post": tasks.update_post_view_count, "article": tasks.update_article_view_count}


def recount(target_type: str, target_id: int) -> None:
    """Enqueue the count task of a target whose relations changed. Called after the commit,
    so the task sees the change; if the broker is down this raises and the client gets 503
    (its change is stored; the next recount of that target includes it)."""
    COUNT_TASK[target_type].delay(target_id)
