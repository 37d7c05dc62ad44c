"""A backing service lost after the view ran (in an after_request function, where Flask-Limiter
reads Redis for its rate limit headers) is a 503 with the JSON error body, as anywhere else: the
lab's chaos run got 500s there when the Redis master crashed mid-request (2026-12-02)."""
from __future__ import annotations

import redis

from testkit.processes import free_port


def test_redis_lost_after_the_view_answers_503_not_500(make_app):
    app = make_app()
    nobody = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)

    @app.after_request
    def read_redis_after_the_view(response):
        nobody.get("anything")  # a real connection refused: nothing listens on that port
        return response

    response = app.test_client().get("/healthz")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "2"
