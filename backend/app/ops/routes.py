"""Liveness and readiness for load balancers and systemd/monitoring."""
from __future__ import annotations

from flask import current_app, jsonify
from sqlalchemy import text

from ..extensions import db, redis_client
from . import bp


@bp.get("/healthz")
def healthz():
    """The process serves (says nothing about its dependencies), and which release it runs."""
    return jsonify({"status": "ok", "release": current_app.config["RELEASE"]})


@bp.get("/readyz")
def readyz():
    """PostgreSQL and Redis answer; 503 naming what failed otherwise."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["postgresql"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        db.session.rollback()
        checks["postgresql"] = f"unavailable: {type(e).__name__}"
    finally:
        db.session.remove()
    try:
        redis_client().ping()
        checks["redis"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["redis"] = f"unavailable: {type(e).__name__}"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        return jsonify({"status": "unavailable", "checks": checks,
                        "error": {"code": "unavailable",
                                  "message": "not ready: " + ", ".join(failed)}}), 503
    return jsonify({"status": "ok", "checks": checks})
