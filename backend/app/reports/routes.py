"""POST /api/reports (any user), GET /api/reports and POST /api/reports/<id>/resolve (staff).
New reports reach the staff live (the `report` event, realtime/events.py's `moderators` room)."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import redis.exceptions
from flask import Blueprint, g, jsonify
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from .. import serializers
from ..auth.security import login_required
from ..content.pages import newest_first
from ..errors import APIError, not_found
from ..extensions import db, socketio
from ..models import TARGET_MODELS, Report
from ..moderation import record
from ..moderation.removal import after_removal, remove
from ..rate_limits import write_per_user
from ..realtime.emit import MODERATORS_ROOM
from ..roles import STAFF, role_required
from ..validation import ReportCreate, ReportQuery, ReportResolve, json_body, query

bp = Blueprint("reports", __name__)
log = logging.getLogger(__name__)


def _live_target(target_type: str, target_id: int):
    """The reported item, if it exists and was not removed (404 otherwise)."""
    item = db.session.get(TARGET_MODELS[target_type], target_id)
    if item is None or item.removed_at is not None:
        raise not_found(target_type.replace("_", " "))
    return item


def _previews(reports) -> dict[tuple[str, int], dict]:
    """What each report's target is, for the staff who read the list: one query per kind."""
    wanted: dict[str, set[int]] = {}
    for r in reports:
        wanted.setdefault(r.target_type, set()).add(r.target_id)
    out = {}
    for target_type, ids in wanted.items():
        model = TARGET_MODELS[target_type]
        for item in db.session.scalars(select(model).where(model.id.in_(ids))):
            out[target_type, item.id] = serializers.report_target(item)
    return out


@bp.post("/api/reports")
@login_required
@write_per_user
def create():
    body = json_body(ReportCreate)
    _live_target(body.target_type, body.target_id)
    report = Report(reporter_id=g.user.id, target_type=body.target_type,
                    target_id=body.target_id, reason=body.reason)
    db.session.add(report)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise APIError(409, "already_reported",
                       "you have an open report of this already") from None
    out = serializers.report(report)
    try:
        socketio.emit("report", out, to=MODERATORS_ROOM)
    except (redis.exceptions.RedisError, OSError) as e:  # the report is stored and listed
        log.warning("report %s not pushed live: %s", report.id, e)
    return jsonify(out), 201


@bp.get("/api/reports")
@role_required(*STAFF)
def index():
    args = query(ReportQuery)
    reports, next_before = newest_first(
        select(Report).where(Report.status == args.status)
        .options(selectinload(Report.reporter), selectinload(Report.resolved_by)),
        Report.id, args)
    previews = _previews(reports)
    return jsonify({
        "items": [serializers.report(r, previews.get((r.target_type, r.target_id)))
                  for r in reports],
        "next_before": next_before,
    })


@bp.post("/api/reports/<int:report_id>/resolve")
@role_required(*STAFF)
def resolve(report_id: int):
    body = json_body(ReportResolve)
    report = db.session.get(Report, report_id, with_for_update=True)
    if report is None:
        raise not_found("report")
    if report.status != "open":
        raise APIError(409, "already_resolved", f"this report was resolved ({report.status})")
    if body.action == "dismiss":
        report.status = "dismissed"
        report.resolved_by_id = g.user.id
        report.resolved_at = datetime.now(timezone.utc)
        record(g.user.id, "dismiss", "report", report.id, body.reason,
               {"target_type": report.target_type, "target_id": report.target_id})
        db.session.commit()
    else:
        item, notice = remove(report.target_type, report.target_id, g.user.id,
                              body.reason or report.reason, report_id=report.id)
        db.session.commit()
        after_removal(report.target_type, item, notice)
    db.session.refresh(report)
    return jsonify(serializers.report(report))
