"""Prometheus metrics of one web instance (each instance is scraped on its own /metrics)."""
from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter("synspirit_http_requests_total", "HTTP requests served",
                   ["method", "endpoint", "status"])
LATENCY = Histogram(
    "synspirit_http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SOCKETIO_CONNECTIONS = Gauge("synspirit_socketio_connections", "open Socket.IO connections")
BUILD_INFO = Gauge("synspirit_build_info", "the release this instance runs (always 1)", ["release"])


def init_metrics(app: Flask) -> None:
    BUILD_INFO.clear()
    BUILD_INFO.labels(app.config["RELEASE"]).set(1)

    @app.before_request
    def _start_timer():
        g._t0 = time.perf_counter()

    @app.after_request
    def _observe(response):
        t0 = g.pop("_t0", None)
        # The route pattern, not the URL: ids must not explode the label space.
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        if t0 is not None:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - t0)
        return response

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
