"""Likes, collects and shares: at most one of each per user and target (the schema's unique
constraints make it so), undone by DELETE except shares. The target's author is notified of
each at most once per actor (reaction_notices)."""
from __future__ import annotations

import logging

import redis.exceptions
from flask import Blueprint, g, jsonify
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from ..auth.security import login_required
from ..dispatch import recount
from ..errors import APIError, not_found
from ..extensions import db
from ..models import REACTION_COLUMN, TARGET_MODELS, Reaction
from ..rate_limits import write_per_user
from ..realtime import emit
from ..serializers import user_public
from ..validation import ActionBody, json_body

bp = Blueprint("actions", __name__)

log = logging.getLogger(__name__)


def _checked(body: ActionBody):
    if body.target_type.endswith("_comment") and body.action != "like":
        raise APIError(400, "unsupported_action", "comments can only be liked",
                       {"action": "comments take 'like' only"})
    model = TARGET_MODELS[body.target_type]
    # Only the author is needed: no ORM object with the whole text.
    author_id = db.session.scalar(select(model.author_id).where(model.id == body.target_id))
    if author_id is None:
        raise not_found(body.target_type.replace("_", " "))
    return author_id


# The reaction and, when it is new, the record that its author is told about it, in one
# statement: a notice already there (like, unlike, like again) means nobody is told again.
_REACT = """
WITH reaction AS (
  INSERT INTO reactions (user_id, action, {column})
  VALUES (:user_id, CAST(:action AS reaction_action), :target_id)
  ON CONFLICT DO NOTHING RETURNING id),
notice AS (
  INSERT INTO reaction_notices (user_id, action, {column})
  SELECT :user_id, CAST(:action AS reaction_action), :target_id FROM reaction WHERE :notify
  ON CONFLICT DO NOTHING RETURNING id)
SELECT (SELECT count(*) FROM reaction), (SELECT count(*) FROM notice)
"""


def _react(user_id: int, body: ActionBody, notify: bool) -> tuple[bool, bool]:
    """Store the reaction; returns (it is new, its author must be notified)."""
    created, noticed = db.session.execute(
        text(_REACT.format(column=REACTION_COLUMN[body.target_type])),
        {"user_id": user_id, "action": body.action, "target_id": body.target_id,
         "notify": notify}).one()
    return bool(created), bool(noticed)


def _result(body: ActionBody, active: bool):
    return jsonify({"action": body.action, "target_type": body.target_type,
                    "target_id": body.target_id, "active": active})


@bp.post("/api/actions")
@login_required
@write_per_user
def act():
    body = json_body(ActionBody)
    owner_id = _checked(body)
    # Read before the commit, which expires the loaded objects (no reload afterwards).
    actor = user_public(g.user)
    try:
        _, notify = _react(g.user.id, body, notify=owner_id != actor["id"])
        db.session.commit()
    except IntegrityError:  # the target was deleted meanwhile
        db.session.rollback()
        raise not_found(body.target_type.replace("_", " ")) from None
    db.session.remove()  # give the connection back before talking to the broker
    # Always recount: a repeated request must still bring the count up to date.
    recount(body.target_type, body.target_id)
    if notify:
        # Published straight to the Socket.IO message queue (one Redis PUBLISH): a Celery task
        # for it cost a broker publish here plus a task on the io worker per like, half of what
        # fed the io queue in `make bench` likes (docs/performance.md).
        try:
            emit.notification(owner_id, {
                "kind": body.action, "actor": actor, "target_type": body.target_type,
                "target_id": body.target_id,
            })
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
