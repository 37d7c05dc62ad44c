"""Removal: a moderator takes a post, article or comment out of the site (a report resolved
with `remove`). The row stays, with removed_at set, for the log: it answers 404 to all but
staff, leaves every list, ranking, search result and its parent's count, its author is notified
(type `moderation`), and its live subscribers are told (`removed`) and unsubscribed."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import redis.exceptions
from flask import current_app
from sqlalchemy import update

from .. import item_cache, serializers
from ..dispatch import recount
from ..errors import not_found
from ..extensions import db, redis_client, socketio
from ..models import TARGET_MODELS, Notification, Report
from ..realtime import emit
from ..realtime.emit import room
from .routes import record

log = logging.getLogger(__name__)


def parent_of(target_type: str, item) -> tuple[str, int] | None:
    """(kind, id) of a comment's post or article; None for a post or article."""
    if target_type.endswith("_comment"):
        kind = target_type.removesuffix("_comment")
        return kind, getattr(item, f"{kind}_id")
    return None


def remove(target_type: str, target_id: int, moderator_id: int, reason: str | None,
           report_id: int | None = None):
    """Remove the target in the session's transaction (the caller commits): removed_at, every
    open report of it resolved as `removed`, the log entry, the author's notification. Returns
    (item, notification or None); removing a removed item again only resolves and logs."""
    model = TARGET_MODELS[target_type]
    item = db.session.get(model, target_id, with_for_update={"of": model})
    if item is None:
        raise not_found(target_type.replace("_", " "))
    now = datetime.now(timezone.utc)
    notice = None
    if item.removed_at is None:
        item.removed_at = now
        if item.author_id != moderator_id:
            notice = Notification(user_id=item.author_id, actor_id=moderator_id,
                                  type="moderation", target_type=target_type,
                                  target_id=target_id)
            db.session.add(notice)
    db.session.execute(
        update(Report)
        .where(Report.target_type == target_type, Report.target_id == target_id,
               Report.status == "open")
        .values(status="removed", resolved_by_id=moderator_id, resolved_at=now))
    record(moderator_id, "remove", target_type, target_id, reason,
           {"report_id": report_id} if report_id else None)
    return item, notice


def after_removal(target_type: str, item, notice=None) -> None:
    """Once committed: caches, counts, live subscribers and the author's live notification
    (each logged, not raised, when Redis is away: the removal itself is stored)."""
    parent = parent_of(target_type, item)
    if parent is None:
        current_app.extensions["synspirit_item_cache"].pop((target_type, item.id))
        try:  # every instance reloads the item (now 404) and the first pages of its lists
            item_cache.bump_version(redis_client(), target_type, item.id)
        except (redis.exceptions.RedisError, OSError) as e:
            log.warning("removed %s %s stays in other instances' caches until they expire: %s",
                        target_type, item.id, e)
    else:
        recount(*parent)  # comments_count without it
    try:
        _tell(target_type, item, parent, notice)
    except (redis.exceptions.RedisError, OSError) as e:
        log.warning("removal of %s %s not pushed live: %s", target_type, item.id, e)


def _tell(target_type: str, item, parent, notice) -> None:
    if notice is not None:
        emit.notification(notice.user_id, serializers.notification(notice))
    event = {"target_type": target_type, "target_id": item.id}
    if parent is None:
        # Its subscribers hear it once more, then nothing: the room is closed on every instance.
        socketio.emit("removed", event, to=room(target_type, item.id))
        socketio.close_room(room(target_type, item.id))
    else:
        kind, parent_id = parent
        socketio.emit("removed", {**event, "parent": {"target_type": kind,
                                                       "target_id": parent_id}},
                      to=room(kind, parent_id))
