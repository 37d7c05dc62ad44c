"""GET /api/moderation/log: who did what to which target, when and why (staff only)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy.orm import selectinload

from ..content.pages import newest_first
from ..extensions import db
from ..models import ModerationEntry
from ..roles import STAFF, role_required
from ..serializers import moderation_entry
from ..validation import LogQuery, query

bp = Blueprint("moderation", __name__)


def record(moderator_id: int, action: str, target_type: str, target_id: int,
           reason: str | None = None, detail: dict | None = None) -> None:
    """Add an entry to the session: it commits with the action it records, or not at all.
    detail: what the action set (a ban's end, a role), or where the target is."""
    db.session.add(ModerationEntry(moderator_id=moderator_id, action=action,
                                   target_type=target_type, target_id=target_id, reason=reason,
                                   detail=detail or None))


@bp.get("/api/moderation/log")
@role_required(*STAFF)
def log():
    args = query(LogQuery)
    entries, next_before = newest_first(
        db.select(ModerationEntry).options(selectinload(ModerationEntry.moderator)),
        ModerationEntry.id, args)
    return jsonify({"items": [moderation_entry(e) for e in entries],
                    "next_before": next_before})
