"""Staff acting on accounts: PUT /api/users/<username>/role (admins name and unname
moderators), POST and DELETE /api/users/<username>/ban (moderators ban and lift bans). Each
change is in the moderation log, committed with it."""
import logging
from datetime import datetime, timezone

import redis.exceptions
from flask import Blueprint, g, jsonify

from .. import serializers
from ..errors import APIError
from ..extensions import db
from ..models import named
from ..moderation import record
from ..realtime import sessions
from ..roles import STAFF, role_of, role_required
from ..validation import BanRequest, RoleChange, json_body

bp = Blueprint("users", __name__)
log = logging.getLogger(__name__)


def account(username: str):
    user = named(username)
    if user is None:
        raise APIError(404, "not_found", "no such user")
    return user


def staff_view(user) -> dict:
    return {"id": user.id, "username": user.username, "role": role_of(user)}


@bp.put("/api/users/<username>/role")
@role_required("admin")
def set_role(username: str):
    body = json_body(RoleChange)
    user = account(username)
    if role_of(user) == "admin":
        # Admins are made and unmade by operators (SYNSPIRIT_ADMINS, `flask users set-role`):
        # a stolen admin token cannot demote the other admins.
        raise APIError(409, "is_admin", "an admin's role is changed by an operator, not the API")
    user.role = body.role
    record(g.user.id, "role", "user", user.id, detail={"username": user.username,
                                                       "role": body.role})
    db.session.commit()
    return jsonify(staff_view(user))


@bp.post("/api/users/<username>/ban")
@role_required(*STAFF)
def ban(username: str):
    body = json_body(BanRequest)
    user = account(username)
    if role_of(user) in STAFF:
        raise APIError(409, "is_staff", "moderators and admins are not banned: an admin makes "
                                        "them users first")
    user.banned_at = datetime.now(timezone.utc)
    user.banned_until = body.until
    user.ban_reason = body.reason
    record(g.user.id, "ban", "user", user.id, body.reason,
           {"username": user.username, "until": serializers.iso(body.until)})
    db.session.commit()
    # After the commit: a connection that comes back is refused (realtime/events.py).
    try:
        sessions.close_all(user.id)
    except (redis.exceptions.RedisError, OSError) as e:  # the ban itself is stored
        log.warning("live connections of banned user %s not closed: %s", user.id, e)
    return jsonify(serializers.ban(user))


@bp.delete("/api/users/<username>/ban")
@role_required(*STAFF)
def unban(username: str):
    user = account(username)
    if user.banned_at is not None:
        user.banned_at = user.banned_until = user.ban_reason = None
        record(g.user.id, "unban", "user", user.id, detail={"username": user.username})
        db.session.commit()
    return "", 204
