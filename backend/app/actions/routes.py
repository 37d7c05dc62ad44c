"""Likes, collects and shares: at most one of each per user and target (the schema's unique
constraints make it so), undone by DELETE except shares. The target's author is notified of
each at most once per actor (reaction_notices): a stored notification, pushed live."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import redis.exceptions
from flask import Blueprint, g, jsonify
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .. import rawdb
from ..auth.security import login_required
from ..dispatch import recount
from ..errors import APIError, not_found
from ..extensions import db
from ..models import REACTION_COLUMN, TARGET_MODELS, Reaction
from ..rate_limits import write_per_user
from ..realtime import emit
from ..serializers import notification as notification_json
from ..serializers import user_public
from ..validation import ActionBody, json_body

bp = Blueprint("actions", __name__)

log = logging.getLogger(__name__)


def _comments_take_likes_only(body: ActionBody) -> None:
    if body.target_type.endswith("_comment") and body.action != "like":
        raise APIError(400, "unsupported_action", "comments can only be liked",
                       {"action": "comments take 'like' only"})


def _checked(body: ActionBody):
    _comments_take_likes_only(body)
    model = TARGET_MODELS[body.target_type]
    # Only the author is needed: no ORM object with the whole text.
    author_id = db.session.scalar(select(model.author_id).where(
        model.id == body.target_id, model.removed_at.is_(None)))
    if author_id is None:
        raise not_found(body.target_type.replace("_", " "))
    return author_id


# The target's author, the reaction and, when it is new, the record that its author is told
# about it and the notification itself, in one statement and one commit (rawdb): no reaction
# without a target (the author is NULL then), and a notice already there (like, unlike, like
# again) means nobody is told again: at most one notification per actor, action and target.
# A target deleted meanwhile breaks the foreign key: IntegrityError.
_REACT = """
WITH target AS (SELECT author_id FROM {table}
                WHERE id = %(target_id)s AND removed_at IS NULL),
reaction AS (
  INSERT INTO reactions (user_id, action, {column})
  SELECT %(user_id)s, CAST(%(action)s AS reaction_action), %(target_id)s FROM target
  ON CONFLICT DO NOTHING RETURNING id),
notice AS (
  INSERT INTO reaction_notices (user_id, action, {column})
  SELECT %(user_id)s, CAST(%(action)s AS reaction_action), %(target_id)s
  FROM reaction, target WHERE target.author_id <> %(user_id)s
  ON CONFLICT DO NOTHING RETURNING id),
notification AS (
  INSERT INTO notifications (user_id, actor_id, type, target_type, target_id)
  SELECT target.author_id, %(user_id)s, CAST(%(action)s AS notification_type),
         CAST(%(target_type)s AS notification_target), %(target_id)s
  FROM notice, target
  RETURNING id, created_at)
SELECT (SELECT author_id FROM target), notification.id, notification.created_at
FROM (SELECT 1) AS one LEFT JOIN notification ON true
"""


def _react(user_id: int, body: ActionBody) -> tuple[int, SimpleNamespace | None]:
    """Store the reaction; returns (the target's author, the notification stored for them or
    None), or 404."""
    sql = _REACT.format(table=TARGET_MODELS[body.target_type].__tablename__,
                        column=REACTION_COLUMN[body.target_type])
    try:
        [(owner_id, notification_id, created_at)] = rawdb.fetch(sql, {
            "user_id": user_id, "action": body.action, "target_type": body.target_type,
            "target_id": body.target_id}, commit=True)
    except IntegrityError:  # the target was deleted meanwhile
        owner_id = None
    if owner_id is None:
        raise not_found(body.target_type.replace("_", " "))
    if notification_id is None:
        return owner_id, None
    return owner_id, SimpleNamespace(id=notification_id, type=body.action,
                                     target_type=body.target_type, target_id=body.target_id,
                                     comment_id=None, read=False, created_at=created_at)


def _result(body: ActionBody, active: bool):
    return jsonify({"action": body.action, "target_type": body.target_type,
                    "target_id": body.target_id, "active": active})


@bp.post("/api/actions")
@login_required
@write_per_user
def act():
    body = json_body(ActionBody)
    _comments_take_likes_only(body)
    actor = user_public(g.user)
    owner_id, stored = _react(g.user.id, body)
    # Always recount: a repeated request must still bring the count up to date.
    recount(body.target_type, body.target_id)
    if stored is not None:
        # Published straight to the Socket.IO message queue (one Redis PUBLISH): a Celery task
        # for it cost a broker publish here plus a task on the io worker per like, half of what
        # fed the io queue in `make bench` likes (docs/performance.md). The stored notification,
        # as GET /api/notifications lists it, plus `kind` (= type) for older clients.
        try:
            emit.notification(owner_id, {**notification_json(stored, actor=actor),
                                         "kind": body.action})
        except (redis.exceptions.RedisError, OSError) as e:  # the like itself is stored
            log.warning("notification of a %s not sent: %s", body.action, e)
    return _result(body, True)


@bp.delete("/api/actions")
@login_required
@write_per_user
def undo():
    body = json_body(ActionBody)
    if body.action == "share":
        raise APIError(400, "irreversible_action", "a share cannot be undone",
                       {"action": "shares cannot be undone"})
    _checked(body)
    column = getattr(Reaction, REACTION_COLUMN[body.target_type])
    db.session.execute(delete(Reaction).where(
        Reaction.user_id == g.user.id, Reaction.action == body.action,
        column == body.target_id))
    db.session.commit()
    db.session.remove()
    recount(body.target_type, body.target_id)
    return _result(body, False)
