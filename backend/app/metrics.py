"""Prometheus metrics of one web instance (each instance is scraped on its own /metrics): the
blueprint times every request of the app and serves /metrics."""
from __future__ import annotations

import time

from flask import Blueprint, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("synspirit_http_requests_total", "HTTP requests served",
                   ["method", "endpoint", "status"])
LATENCY = Histogram(
    "synspirit_http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# The method label takes these values and "other": a client may send any token as the method,
# and each one would be a new series (2,000 invented methods made /metrics 3.3 MB).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SOCKETIO_CONNECTIONS = Gauge("synspirit_socketio_connections", "open Socket.IO connections")
BUILD_INFO = Gauge("synspirit_build_info", "the release this instance runs (always 1)", ["release"])


@bp.record
def _build_info(state) -> None:
    BUILD_INFO.clear()
    BUILD_INFO.labels(state.app.config["RELEASE"]).set(1)


@bp.before_app_request
def _start_timer():
    g._t0 = time.perf_counter()


@bp.after_app_request
def _observe(response):
    t0 = g.pop("_t0", None)
    # The route pattern, not the URL: ids must not explode the label space.
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    method = request.method if request.method in KNOWN_METHODS else "other"
    REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
    if t0 is not None:
        LATENCY.labels(method, endpoint).observe(time.perf_counter() - t0)
    return response


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
