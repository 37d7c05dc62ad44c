"""Configuration from the environment, with documented defaults in one place."""
from __future__ import annotations

import os
import secrets
import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit


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


SENTINEL_PORT = 26379
SENTINEL_MASTER = "synspirit"
# Each Sentinel is asked once, with a deadline, then the next one: with a Sentinel that did not
# answer (SIGSTOP) first in the list, finding the master took for ever without a deadline,
# 9.1 s with a 1 s deadline and redis-py's default retries (3, 1-10 s backoff), 1.0 s so. A
# Sentinel answers from memory, well under a millisecond on a LAN.
SENTINEL_TIMEOUT = 1


@dataclass(frozen=True)
class RedisLocation:
    """REDIS_URL, parsed here once for every Redis client (Celery, Socket.IO, Flask-Limiter, the
    app's own client): a plain `redis://` URL used as given, or the master that Redis Sentinels
    name, `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT],HOST[:PORT].../[MASTER[/DB]]`
    (port 26379, master `synspirit`, db 0 unless given). The password (and user) authenticate
    to the Sentinels and to the master alike.

    TLS: `rediss://` (one server) and `rediss+sentinel://` (the Sentinels and the master) make
    every client check the server's certificate against REDIS_TLS_CA_FILE (else the system's
    CAs) and, unless REDIS_TLS_CHECK_HOSTNAME=0, the name or address it was reached at."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()  # empty: a plain Redis URL
    master: str = SENTINEL_MASTER
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_ca_file: str | None = None
    tls_check_hostname: bool = True

    def ssl_options(self) -> dict:
        """redis-py's (and kombu's, RedBeat's) SSL connection options; {} without TLS."""
        if not self.tls:
            return {}
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": self.tls_ca_file,
                "ssl_check_hostname": self.tls_check_hostname}

    @property
    def auth(self) -> dict:
        """username/password, those given, as redis-py's keyword arguments."""
        return {k: v for k, v in (("username", self.username), ("password", self.password)) if v}

    def sentinel_kwargs(self) -> dict:
        """Connection options for the Sentinels themselves (redis.sentinel.Sentinel's)."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return {**self.auth, "socket_timeout": SENTINEL_TIMEOUT,
                "socket_connect_timeout": SENTINEL_TIMEOUT, "retry": Retry(NoBackoff(), 0),
                **({"ssl": True, **self.ssl_options()} if self.tls else {})}

    def celery_url(self) -> str:
        """Celery's broker and result backend URL: kombu's `sentinel://...;sentinel://...`."""
        if not self.sentinels:
            return self.url
        auth = ":".join(quote(v or "", safe="") for v in (self.username, self.password))
        auth = f"{auth}@" if self.auth else ""
        return ";".join(f"sentinel://{auth}{_netloc(host, port)}/{self.db}"
                        for host, port in self.sentinels)

    def celery_transport_options(self) -> dict:
        """To add to both broker_ and result_backend_transport_options."""
        if not self.sentinels:
            return {}
        return {"master_name": self.master, "sentinel_kwargs": self.sentinel_kwargs()}

    def limits_storage(self) -> tuple[str, dict]:
        """Flask-Limiter's storage URI and options. Behind Sentinels, the pool of a client built
        as the application's own (redis_connect.connect with web_options): the counters follow
        the same master as everything else (a majority of the Sentinels, not the first that
        answers)."""
        if not self.sentinels:
            return self.url, self.ssl_options()
        from .redis_connect import connect, web_options

        client = connect(self.url, **web_options())
        return "redis://", {"connection_pool": client.connection_pool}


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redis_tls() -> dict:
    """REDIS_TLS_CA_FILE and REDIS_TLS_CHECK_HOSTNAME, for a rediss URL; ConfigError when the CA
    file cannot be read (a typo would otherwise show only as failed connections)."""
    ca_file = os.environ.get("REDIS_TLS_CA_FILE") or None
    if ca_file:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"REDIS_TLS_CA_FILE: cannot read CA certificates from {ca_file}: "
                              f"{e}") from e
    check = os.environ.get("REDIS_TLS_CHECK_HOSTNAME", "1").strip().lower()
    if check not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError("REDIS_TLS_CHECK_HOSTNAME must be 1 or 0")
    return {"tls": True, "tls_ca_file": ca_file,
            "tls_check_hostname": check in ("1", "true", "yes")}


def parse_redis_url(url: str) -> RedisLocation:
    """REDIS_URL -> RedisLocation; ConfigError when a redis+sentinel:// URL is malformed or the
    TLS settings of a rediss URL are unusable."""
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis+sentinel", "rediss+sentinel"):
        return RedisLocation(url=url, **(_redis_tls() if scheme == "rediss" else {}))
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = []
    for item in hostlist.split(","):
        try:
            location = urlsplit(f"//{item.strip()}")
            host, port = location.hostname, location.port or SENTINEL_PORT
        except ValueError:
            host = None
        if not host:
            raise ConfigError(f"REDIS_URL: bad Sentinel address {item!r} (HOST[:PORT], "
                              "comma-separated)")
        sentinels.append((host, port))
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if parts.query or parts.fragment or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"REDIS_URL: expected {scheme}://[[USER]:PASSWORD@]HOST[:PORT],"
                          "HOST[:PORT].../MASTER_NAME[/DB]")
    return RedisLocation(url=url, sentinels=tuple(sentinels),
                         **(_redis_tls() if scheme == "rediss+sentinel" else {}),
                         master=(path[0] if path and path[0] else SENTINEL_MASTER),
                         username=unquote(username) or None, password=unquote(password) or None,
                         db=int(path[1]) if len(path) == 2 else 0)


def load_config() -> dict:
    env = os.environ.get("SYNSPIRIT_ENV", "production")
    secret_key = os.environ.get("SECRET_KEY")
    if not secret_key:
        if env == "production":
            raise ConfigError("SECRET_KEY must be set when SYNSPIRIT_ENV=production")
        secret_key = secrets.token_urlsafe(32)  # development: tokens die with the process
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ratelimit_uri, ratelimit_options = parse_redis_url(redis_url).limits_storage()
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
        # Usernames (comma-separated, any case) that are admins whatever users.role holds: how
        # the first admin exists (app/roles.py).
        "ADMINS": frozenset(name.strip().lower()
                            for name in os.environ.get("SYNSPIRIT_ADMINS", "").split(",")
                            if name.strip()),
        "SOCKETIO_CORS_ORIGINS": _origins(os.environ.get("SOCKETIO_CORS_ORIGINS")),
        "TRUSTED_PROXY_COUNT": _int("TRUSTED_PROXY_COUNT", 0),
        # Rate limits (rate_limits.py), in Flask-Limiter's notation ("N per minute", several
        # separated by ";"). Failed logins allowed per client address and, separately, per
        # account name.
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "10 per minute"),
        # New accounts per client address: a person makes one; a family or an office behind one
        # address a few; a script filling the site with accounts is stopped at 20 an hour.
        "REGISTER_RATE_LIMIT": os.environ.get("REGISTER_RATE_LIMIT", "20 per hour"),
        # Writes per user (posts, articles, edits, deletes, comments, likes, collects, shares):
        # one a second for a minute, or one every six seconds for an hour, is beyond anyone
        # reading what they like and comment on; a script writing in a loop meets it at once.
        "WRITE_RATE_LIMIT": os.environ.get("WRITE_RATE_LIMIT", "60 per minute; 600 per hour"),
        # What a view is (counting.py, docs/contract.md): one viewer's reads of one post or
        # article count once per this many seconds; the viewer is the signed-in user, else the
        # client address (an IPv6 client's /64). 10 minutes: a reader scrolling back and forth
        # or reloading counts once, one who comes back later counts again, and a script reading
        # in a loop adds one view per address (or account) and item every 10 minutes, not
        # thousands. 0 counts every read (tests, the bench and chaos, which count raw reads).
        "VIEW_DEDUP_SECONDS": _int("VIEW_DEDUP_SECONDS", 600),
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
        # Days a READ notification is kept (tasks.prune_notifications, every minute, deletes
        # older ones); unread ones are kept until read.
        "NOTIFICATION_RETENTION_DAYS": _int("NOTIFICATION_RETENTION_DAYS", 30),
        # Seconds before a task taken by a worker that died (kill -9, power loss) is handed to
        # another worker (celery_config.py). Raise it above the longest task's run time.
        "CELERY_VISIBILITY_TIMEOUT": _int("CELERY_VISIBILITY_TIMEOUT", 60),
        # Where a Celery worker serves its task metrics (/metrics); port 0 = not served.
        "WORKER_METRICS_HOST": os.environ.get("WORKER_METRICS_HOST", "127.0.0.1"),
        "WORKER_METRICS_PORT": _int("WORKER_METRICS_PORT", 0),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "RATELIMIT_STORAGE_URI": ratelimit_uri,
        "RATELIMIT_STORAGE_OPTIONS": ratelimit_options,
        "RATELIMIT_KEY_PREFIX": "synspirit:ratelimit",
        "RATELIMIT_HEADERS_ENABLED": True,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
    }
