"""Every 4xx/5xx body is {"error": {"code", "message", "fields"?}}."""
from __future__ import annotations

import logging

import redis.exceptions
from flask import Flask, jsonify
from flask_limiter.errors import RateLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from .extensions import db

log = logging.getLogger(__name__)


class APIError(Exception):
    """details: more members of the error object (a ban's `until` and `reason`)."""

    def __init__(self, status: int, code: str, message: str, fields: dict | None = None,
                 details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields
        self.details = details


def error_response(status: int, code: str, message: str, fields: dict | None = None,
                   details: dict | None = None):
    body = {"code": code, "message": message, **(details or {})}
    if fields:
        body["fields"] = fields
    return jsonify({"error": body}), status


def not_found(what: str = "resource") -> APIError:
    return APIError(404, "not_found", f"{what} not found")


# A backing service away: answered with 503 (_unavailable). PoolTimeout: every pooled
# PostgreSQL connection busy, back off. ReadOnlyError: a Redis master just made a replica.
UNAVAILABLE = (OperationalError, PoolTimeout, redis.exceptions.ConnectionError,
               redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError, BrokerError)


def is_unavailable(e: BaseException | None) -> bool:
    """An error that means "not now", not a bug: away, or a master that refuses writes
    because no replica has acknowledged it lately (NOREPLICAS: min-replicas-to-write, the
    Redis role; a master cut off from the other data hosts). redis-py has no class for it, and
    names it inside a pipeline's error ("Command # 1 (...) of pipeline caused error: ...")."""
    return isinstance(e, UNAVAILABLE) or (isinstance(e, redis.exceptions.ResponseError)
                                          and "NOREPLICAS" in str(e))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(e: APIError):
        return error_response(e.status, e.code, e.message, e.fields, e.details)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(e: RateLimitExceeded):
        resp, status = error_response(429, "rate_limited", f"too many attempts: {e.description}")
        return resp, status

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        # An error raised after the view, in an after_request function, reaches no handler of
        # its own: Flask wraps it in a 500. Flask-Limiter's rate limit headers read Redis
        # there; when the Redis master crashed mid-request the lab's chaos run got 500s
        # (2026-12-02): a backing service away is a 503, wherever it is found.
        if isinstance(e, InternalServerError) and is_unavailable(e.original_exception):
            return _unavailable(e.original_exception)
        code = (e.name or "error").lower().replace(" ", "_")
        resp, status = error_response(e.code or 500, code, e.description or e.name)
        for name, value in e.get_headers():  # e.g. Allow on 405
            if name.lower() != "content-type":
                resp.headers[name] = value
        return resp, status

    # A dependency that is down is the server's temporary trouble, not a bug: 503, retryable.
    def _unavailable(e: Exception):
        db.session.rollback()
        log.warning("dependency unavailable: %s", e)
        resp, status = error_response(503, "unavailable", "a backing service is unavailable")
        resp.headers["Retry-After"] = "2"
        return resp, status

    for error in UNAVAILABLE:
        app.register_error_handler(error, _unavailable)

    @app.errorhandler(redis.exceptions.ResponseError)
    def _redis_error(e: redis.exceptions.ResponseError):
        if is_unavailable(e):
            return _unavailable(e)
        return _unexpected(e)

    @app.errorhandler(DBAPIError)
    def _db_error(e: DBAPIError):
        db.session.rollback()
        if getattr(e, "connection_invalidated", False):
            return _unavailable(e)
        log.exception("database error")
        return error_response(500, "internal_error", "internal server error")

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        db.session.rollback()
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
