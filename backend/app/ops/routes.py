"""Liveness and readiness for load balancers and systemd/monitoring."""
from __future__ import annotations

import gevent
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..extensions import db, redis_client

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """The process serves (says nothing about its dependencies), and which release it runs."""
    return jsonify({"status": "ok", "release": current_app.config["RELEASE"]})


# Seconds each dependency may take to answer. Without a deadline a cut network made /readyz
# hang for the connection timeouts and retries added up (a pooled PostgreSQL connection: 5 s
# tcp_user_timeout, then a 3 s reconnect; Redis: 3 s per try, with redis-py's retries), i.e.
# longer than a load balancer's or the chaos probe's health-check timeout, so readiness was
# never *seen* failing (make chaos, network cut). Under gevent (production) the timeout
# interrupts the wait; gevent.Timeout is a BaseException, on which SQLAlchemy invalidates the
# interrupted connection and redis-py disconnects it, so neither goes back to a pool half-used.
READY_TIMEOUT = 2.5


def _check(probe) -> str:
    try:
        with gevent.Timeout(READY_TIMEOUT):
            probe()
        return "ok"
    except gevent.Timeout:
        return f"unavailable: no answer within {READY_TIMEOUT} s"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        return f"unavailable: {type(e).__name__}"


def _postgresql() -> None:
    try:
        db.session.execute(text("SELECT 1"))
    except BaseException:
        db.session.rollback()
        raise
    finally:
        db.session.remove()


@bp.get("/readyz")
def readyz():
    """PostgreSQL and Redis answer (each within READY_TIMEOUT); 503 naming what failed otherwise."""
    checks = {"postgresql": _check(_postgresql), "redis": _check(lambda: redis_client().ping())}
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        return jsonify({"status": "unavailable", "checks": checks,
                        "error": {"code": "unavailable",
                                  "message": "not ready: " + ", ".join(failed)}}), 503
    return jsonify({"status": "ok", "checks": checks})
