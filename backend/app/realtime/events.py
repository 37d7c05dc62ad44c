"""Socket.IO handlers on the default namespace."""
from __future__ import annotations

from flask import request
from flask_socketio import ConnectionRefusedError, join_room, leave_room, rooms

from ..auth.security import user_from_token
from ..errors import APIError
from ..extensions import db, socketio
from ..metrics import SOCKETIO_CONNECTIONS
from ..models import CONTENT_MODELS
from ..roles import STAFF, role_of
from ..validation import Subscription, parse
from . import sessions
from .emit import MODERATORS_ROOM, room, user_room


@socketio.on("connect")
def connect(auth=None):
    token = auth.get("token") if isinstance(auth, dict) else None
    if token is not None:
        user = user_from_token(token) if isinstance(token, str) else None
        db.session.remove()
        if user is None:
            raise ConnectionRefusedError("invalid or expired token")
        if user.banned:
            raise ConnectionRefusedError("this account is banned")
        # A user's notifications go to a room only the server can put them in.
        join_room(user_room(user.id))
        sessions.opened(user.id, request.sid)  # so that a ban can close it (sessions.py)
        if role_of(user) in STAFF:  # named later: from the next connection on
            join_room(MODERATORS_ROOM)
    SOCKETIO_CONNECTIONS.inc()


@socketio.on("disconnect")
def disconnect(reason=None):
    SOCKETIO_CONNECTIONS.dec()
    for name in rooms():
        if name.startswith("user:"):
            sessions.closed(int(name.removeprefix("user:")), request.sid)


def _subscription(data) -> tuple[dict | None, Subscription | None]:
    try:
        sub = parse(Subscription, data)
    except APIError as e:
        return {"ok": False, "error": e.message, "fields": e.fields}, None
    return None, sub


@socketio.on("subscribe")
def subscribe(data=None):
    error, sub = _subscription(data)
    if error:
        return error
    try:
        item = db.session.get(CONTENT_MODELS[sub.target_type], sub.target_id)
        exists = item is not None and item.removed_at is None
    finally:
        db.session.remove()
    if not exists:
        return {"ok": False, "error": f"{sub.target_type} not found"}
    join_room(room(sub.target_type, sub.target_id))
    return {"ok": True}


@socketio.on("unsubscribe")
def unsubscribe(data=None):
    error, sub = _subscription(data)
    if error:
        return error
    leave_room(room(sub.target_type, sub.target_id))
    return {"ok": True}


@socketio.on_error_default
def on_error(e):
    # A handler that failed (a database hiccup, say) answers with an error ack; the connection
    # and the worker carry on.
    db.session.rollback()
    return {"ok": False, "error": "internal error"}
