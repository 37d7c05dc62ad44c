"""Redis clients from REDIS_URL (config.parse_redis_url): for the one server of a `redis://`
(`rediss://`: TLS) URL, or for the master that the Sentinels of a `redis+sentinel://`
(`rediss+sentinel://`: TLS to both) URL name, followed across failovers without a restart."""
from __future__ import annotations

import time

import redis
from redis.backoff import ConstantBackoff
from redis.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from .config import parse_redis_url


def web_options() -> dict:
    """Connection options of the web instances' clients (the application's own and
    Flask-Limiter's). One retry after 0.5 s (a stale pooled connection after a Redis restart,
    a blip), not redis-py's default of 3 with 1-10 s backoff: with the network to Redis cut that
    default held a request ~20 s on one command (3 s timeout per try plus the backoff), past
    clients' and nginx's patience (make chaos, network cut); and after the master's host
    vanished it kept the login rate limit away for 39-51 s (test_sentinel_failover.py, host
    gone). Now at most ~6.5 s, then the caller's fallback (view not counted, recount left to
    reconcile_counts, or 503)."""
    return {"socket_timeout": 3, "socket_connect_timeout": 3, "health_check_interval": 30,
            "retry": Retry(ConstantBackoff(0.5), 1)}


def connect(redis_url: str, **options) -> redis.Redis:
    """A client; options are redis-py's connection options (timeouts, retry...)."""
    location = parse_redis_url(redis_url)
    if not location.sentinels:
        return redis.Redis.from_url(redis_url, **location.ssl_options(), **options)
    # Every connection asks the Sentinels where the master is when it connects.
    sentinels = QuorumSentinel(location.sentinels, sentinel_kwargs=location.sentinel_kwargs())
    return sentinels.master_for(
        location.master, connection_pool_class=MasterPool,
        connection_class=MasterSSLConnection if location.tls else MasterConnection,
        db=location.db, **location.auth, **location.ssl_options(), **options)


SILENT_FOR = 30.0  # seconds a Sentinel that did not answer is asked after the others


class QuorumSentinel(Sentinel):
    """Believes a majority of the Sentinels, not the first that answers.

    redis-py takes the first Sentinel's answer. A Sentinel on a host cut off from the others
    (but not from the clients) goes on naming its own master while the others promote a
    replica: clients that asked it first wrote views into a Redis that was made a replica, and
    discarded them, when the cut ended (the lab's chaos run, 2026-12-02: 176 of 694 views).
    A failover raises the master's config-epoch on the Sentinels that made it, a majority, so
    any majority holds the newest: ask until a majority has answered, take the highest epoch.
    With fewer answering (most Sentinels away) the best answer found is taken, as redis-py
    would; the Redis role's min-replicas-to-write stops a master alone from taking writes.
    A Sentinel that did not answer is asked after the others for SILENT_FOR seconds."""

    def discover_master(self, service_name):
        majority = len(self.sentinels) // 2 + 1
        # Asked in their configured order, those that failed in the last SILENT_FOR seconds
        # last. (Reordering the shared list in place raced with the other greenlets asking at
        # the same time: a Sentinel gone with its host was asked again and again, 1 s each,
        # and every connect to the new master took ~9 s: test_sentinel_failover.py, host gone.)
        failed_at = self.__dict__.setdefault("_failed_at", {})
        now = time.monotonic()
        order = sorted(self.sentinels,
                       key=lambda s: now - failed_at.get(id(s), float("-inf")) < SILENT_FOR)
        answered, errors, best = 0, [], None
        for sentinel in order:
            if answered >= majority:
                break
            try:
                state = sentinel.sentinel_masters().get(service_name)
            except (RedisConnectionError, RedisTimeoutError) as e:
                errors.append(f"{sentinel} - {e!r}")
                failed_at[id(sentinel)] = time.monotonic()
                continue
            failed_at.pop(id(sentinel), None)
            answered += 1
            if state and self.check_master_state(state, service_name) and (
                    best is None or state["config-epoch"] > best["config-epoch"]):
                best = state
        if best is None:
            raise MasterNotFoundError(f"No master found for {service_name!r}"
                                      + (f" : {', '.join(errors)}" if errors else ""))
        return best["ip"], best["port"]


class MasterConnection(SentinelManagedConnection):
    # redis-py's plain connections close themselves when a read is interrupted (the
    # gevent.Timeout of /readyz); its Sentinel ones did not and went back to the pool with the
    # reply still due: with the former master silent, every later /readyz took that same
    # connection and timed out, long after the failover (test_sentinel_failover.py, SIGSTOP).
    def read_response(self, *args, disconnect_on_error=True, **kwargs):
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


class MasterSSLConnection(MasterConnection, SSLConnection):
    """MasterConnection over TLS (as redis-py's SentinelManagedSSLConnection)."""


class MasterPool(SentinelConnectionPool):
    # redis-py asks the Sentinels only when a connection connects, so after a failover the
    # pooled connections to the silent former master were handed out until one had timed out:
    # 8 commands in a row right after the promotion took 6.5 s, one failed (8 idle connections,
    # SIGSTOP of the master). Asking before handing out a connection, at most once a second,
    # closes the idle ones as soon as the Sentinels name another master: 0.2 s, none failed.
    checked = 0.0

    def get_connection(self, *args, **kwargs):
        if time.monotonic() - self.checked >= 1:
            self.checked = time.monotonic()
            try:
                self.get_master_address()  # closes idle connections to a former master
            except RedisConnectionError:
                pass  # no master known: the connection's own connect says so
        return super().get_connection(*args, **kwargs)
