"""GET /api/notifications and POST /api/notifications/read: the signed-in user's own
notifications, newest first, and marking them read.

The rows are written by the statements that store their causes (actions/routes.py: likes,
collects, shares, at most one per actor, action and target; content/routes.py: comments) and
pushed live with the same id; read ones older than NOTIFICATION_RETENTION_DAYS are pruned
(tasks.prune_notifications)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify
from sqlalchemy import func, select, update

from ..auth.security import login_required
from ..content.pages import newest_first
from ..extensions import db
from ..models import Notification
from ..serializers import notification as notification_json
from ..validation import NotificationQuery, NotificationsRead, json_body, query

bp = Blueprint("notifications", __name__, url_prefix="/api/notifications")


@bp.get("")
@login_required
def index():
    q = query(NotificationQuery)
    # ix_notifications_user_id_id
    rows, next_before = newest_first(
        select(Notification).where(Notification.user_id == g.user.id), Notification.id, q)
    # From the partial index of unread rows (ix_notifications_unread).
    unread = db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == g.user.id, ~Notification.read))
    body = {"items": [notification_json(row) for row in rows], "unread_count": unread,
            "next_before": next_before}
    db.session.remove()
    return jsonify(body)


@bp.post("/read")
@login_required
def mark_read():
    body = json_body(NotificationsRead)
    stmt = update(Notification).where(Notification.user_id == g.user.id,
                                      ~Notification.read).values(read=True)
    if body.up_to is not None:
        stmt = stmt.where(Notification.id <= body.up_to)
    db.session.execute(stmt)
    db.session.commit()
    db.session.remove()
    return "", 204
