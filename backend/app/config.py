"""Configuration from the environment, with documented defaults in one place."""
from __future__ import annotations

import os
import secrets


class ConfigError(RuntimeError):
    """Raised when the environment cannot give a safe configuration."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _origins(raw: str | None):
    # None lets Socket.IO accept only the server's own origin (and clients that send none).
    if raw is None or raw.strip() == "":
        return None
    if raw.strip() == "*":
        return "*"
    return [o.strip() for o in raw.split(",") if o.strip()]


def load_config() -> dict:
    env = os.environ.get("SYNSPIRIT_ENV", "production")
    secret_key = os.environ.get("SECRET_KEY")
    if not secret_key:
        if env == "production":
            raise ConfigError("SECRET_KEY must be set when SYNSPIRIT_ENV=production")
        secret_key = secrets.token_urlsafe(32)  # development: tokens die with the process
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return {
        "SYNSPIRIT_ENV": env,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": os.environ.get(
            "DATABASE_URL", "postgresql+psycopg2://synspirit@127.0.0.1:5432/synspirit"
        ),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            # One gevent worker serves many requests at once; the pool bounds how many of them
            # hold a PostgreSQL connection. pre_ping survives a database restart.
            # 40 kept + 10 overflow: `make bench` saw 10 + 20 exhausted by 64 concurrent likes
            # (QueuePool limit), and with 20 + 20 the overflow connections opened and closed
            # on every burst cost 19 % (views) and 12 % (likes) of the web worker's CPU in
            # psycopg2.connect (docs/performance.md). At most 50 per process: size PostgreSQL's
            # max_connections for (web instances + workers) x 50 at the very worst.
            "pool_size": _int("DB_POOL_SIZE", 40),
            "max_overflow": _int("DB_MAX_OVERFLOW", 10),
            "pool_timeout": _int("DB_POOL_TIMEOUT", 10),
            "pool_pre_ping": True,
            # tcp_user_timeout: a connection whose sent data stays unacknowledged for 5 s (the
            # network to PostgreSQL is cut) fails, so the request answers 503 instead of hanging
            # until TCP gives up (~15 min); keepalives find dead idle connections (make chaos).
            "connect_args": {"connect_timeout": 3, "application_name": "synspirit",
                             "tcp_user_timeout": 5000, "keepalives": 1, "keepalives_idle": 10,
                             "keepalives_interval": 3, "keepalives_count": 3},
        },
        "REDIS_URL": redis_url,
        # Which release this process runs, as the deployment recorded it (roles/synspirit:
        # the controller's `git describe --always --dirty`); shown by /healthz and /metrics.
        "RELEASE": os.environ.get("SYNSPIRIT_RELEASE") or "unknown",
        "API_HOST": os.environ.get("API_HOST", "127.0.0.1"),
        "API_PORT": _int("API_PORT", 5000),
        "TOKEN_MAX_AGE": _int("TOKEN_MAX_AGE", 86400),
        "SOCKETIO_CORS_ORIGINS": _origins(os.environ.get("SOCKETIO_CORS_ORIGINS")),
        "TRUSTED_PROXY_COUNT": _int("TRUSTED_PROXY_COUNT", 0),
        # Failed logins allowed per client address and, separately, per account name.
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "10 per minute"),
        # Argon2id, RFC 9106's second recommended option (64 MiB, t=3, p=4).
        "ARGON2_TIME_COST": _int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST": _int("ARGON2_MEMORY_COST", 65536),
        "ARGON2_PARALLELISM": _int("ARGON2_PARALLELISM", 4),
        # Per-instance cache of serialized posts/articles without their counts (item_cache.py):
        # served while the item's version in Redis is unchanged (edits and deletes bump it), so
        # the TTL only bounds memory and the staleness left by a version bump that failed; the
        # counts come from Redis on every read. 60 s / 4,000 items: `make bench` views over
        # 2,000 posts (each viewed every few seconds) then read PostgreSQL about once per post
        # per minute (docs/performance.md); worst case 4,000 x 20,000-character posts ~ 200 MB.
        "ITEM_CACHE_TTL": float(os.environ.get("ITEM_CACHE_TTL", "60")),
        "ITEM_CACHE_SIZE": _int("ITEM_CACHE_SIZE", 4000),
        # Seconds before a task taken by a worker that died (kill -9, power loss) is handed to
        # another worker (celery_setup.py). Raise it above the longest task's run time.
        "CELERY_VISIBILITY_TIMEOUT": _int("CELERY_VISIBILITY_TIMEOUT", 60),
        # Where a Celery worker serves its task metrics (/metrics); port 0 = not served.
        "WORKER_METRICS_HOST": os.environ.get("WORKER_METRICS_HOST", "127.0.0.1"),
        "WORKER_METRICS_PORT": _int("WORKER_METRICS_PORT", 0),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_KEY_PREFIX": "synspirit:ratelimit",
        "RATELIMIT_HEADERS_ENABLED": True,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
    }
