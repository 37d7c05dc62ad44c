"""Celery's configuration, bound to Flask (the pattern of Flask's own docs): its settings, the
shared retry policy and a task base class that runs every task inside the Flask app context.
The Celery application itself is celery_utils.py (`celery -A app.celery_utils`)."""
from __future__ import annotations

import kombu
import redis.exceptions
from celery import Celery, Task
from celery.app.amqp import AMQP
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, OperationalError

from .config import parse_redis_url
from .schedule import beat_config
from .task_metrics import init_task_metrics

# One retry policy for every task: a backing service that is briefly away (a restart of
# PostgreSQL or Redis) is retried with exponential backoff and jitter, not lost.
RETRY_KWARGS = {
    "autoretry_for": (
        OperationalError,
        DBAPIError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ReadOnlyError,  # a master just made a replica
        BrokerError,
        ConnectionError,
        TimeoutError,
    ),
    "max_retries": 8,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}

# Counter tasks recompute from rows, so running one twice is harmless: ack after the work and
# requeue when the worker dies mid-task.
IDEMPOTENT = {"acks_late": True, "reject_on_worker_lost": True}

# An unacknowledged task (its worker was killed) is redelivered once it is older than the
# visibility timeout (CELERY_VISIBILITY_TIMEOUT, default 60 s in config.py). Every task here
# finishes in well under a second except article rendering and ranking (a few seconds at
# most), so 60 s bounds the recovery time after a kill -9 without redelivering work that is
# still running. ETA/countdown tasks (the 1 s view flush) stay far below it.
#
# kombu looks for such tasks only every 10th sweep, and a prefork worker sweeps every 10 s
# (gevent workers only when a 2 s poll finds nothing): up to 100 s more on top of the
# visibility timeout. `make chaos` saw kill -9 of the io worker not recovered 120 s later in CI.
# One sweep every 5 s (a ZRANGE on Redis per worker) makes it visibility timeout + 5 s;
# tests/backend/workers/test_redelivery.py checks it with a real worker killed mid-task.
RESTORE_SWEEP = {"unacked_restore_interval": 5, "unacked_restore_throttle": 1}

# Bounded waits on a Redis that went silent (host gone, network cut, a failover to another
# master): a web request or a worker fails fast and reconnects instead of hanging. kombu drops
# a consumer's BRPOP connection once its reply is health_check_interval overdue, checked every
# health_check_interval; with its default of 25 s and a socket_timeout of 10 s, after a
# SIGSTOP of the master the cpu worker took no task for over 90 s and the io worker for 30 s
# (test_sentinel_failover.py). The cost: a PING before using a connection idle for 2 s.
BROKER_TIMEOUTS = {"socket_connect_timeout": 3, "socket_timeout": 3, "health_check_interval": 2}

# kombu's Redis channel keeps at most 10 connections by default and raises MaxConnectionsError
# past that instead of waiting: the io worker's gevent pool (-c 1000) acks late-acked counter
# tasks from each task's greenlet, and a burst of them finishing together failed to ack
# ("Couldn't ack ... MaxConnectionsError" in `make bench`'s io drain), leaving them unacked
# until the visibility timeout redelivered them.
BROKER_POOL = {"max_connections": 200}

CPU_TASKS = ("app.tasks.render_article", "app.tasks.recompute_hot_scores",
             "app.tasks.render_pending_articles")


def settings(flask_config: dict) -> dict:
    """Celery's settings for an app configuration (config.py)."""
    redis_location = parse_redis_url(flask_config["REDIS_URL"])
    url = redis_location.celery_url()
    sentinel = redis_location.celery_transport_options()  # master_name, sentinel_kwargs or {}
    visibility = flask_config.get("CELERY_VISIBILITY_TIMEOUT", 60)
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": {"visibility_timeout": visibility, **RESTORE_SWEEP,
                                     **BROKER_TIMEOUTS, **BROKER_POOL, **sentinel},
        "result_backend_transport_options": {"visibility_timeout": visibility, **sentinel},
        "broker_pool_limit": 10,
        "broker_connection_retry_on_startup": True,
        # TLS (a rediss URL): kombu, Celery's result backend and RedBeat check the server's
        # certificate (the Sentinels' own connections: sentinel_kwargs above).
        **({"broker_use_ssl": redis_location.ssl_options(),
            "redis_backend_use_ssl": redis_location.ssl_options()} if redis_location.tls else {}),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "result_expires": 3600,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        "task_default_queue": "io",
        "task_routes": {name: {"queue": "cpu"} for name in CPU_TASKS},
        # A web request that cannot reach the broker answers 503 quickly instead of hanging.
        "task_publish_retry_policy": {
            "max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5,
        },
        # Task events cost the io worker a quarter of its CPU in `make bench`; nothing here
        # consumes them (task metrics come from signals in each worker: task_metrics.py).
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        # Periodic tasks and the scheduler that sends them (one active beat at a time).
        **beat_config(flask_config["REDIS_URL"]),
    }


class BrokerConnection(kombu.Connection):
    """kombu's Connection, made safe to close after collect() (kombu 5.7.0 with celery 5.7.0) and
    quicker to reconnect.

    On a broker connection error celery's consumer collect()s its connection (lets go of the
    transport without talking to the broker) and then close()s it. collect() keeps the default
    channel, the one tasks are consumed on; close() closes it a second time. When its first
    close stopped half-way (the BRPOP still outstanding on the dead master failed to read), the
    second one restores the unacknowledged messages through a new connection pool, built from
    the transport's client that collect() had set to None: AttributeError("'NoneType' object
    has no attribute 'hostname'"), not a connection error, so the io worker exited
    ("Unrecoverable error") in the lab's crash-redis and systemd restarted it. A collected
    connection has no default channel left to close. Its unacknowledged messages stay in
    Redis and are redelivered after the visibility timeout, as a killed worker's are.
    Checked by tests/backend/failover/test_sentinel_failover.py ("host gone")."""

    def collect(self, socket_timeout=None):
        super().collect(socket_timeout)
        self._default_channel = None

    def _ensure_connection(self, errback=None, max_retries=None, interval_start=1,
                           interval_step=1, interval_max=2, **kwargs):
        # celery's consumer reconnects with kombu's defaults (2 s, then 2 s more each time):
        # tries at 0, 2, 6, 12 s after a lost master. The Sentinels name the new one 4-5 s
        # after the failure; under load the try at 6 s came just before and the workers took
        # tasks again only 14.5 s after it (CI, test_sentinel_failover.py). Here 1 s, then
        # 2 s, then every 3 s (kombu's steps go up to interval_max + interval_start): back
        # within 3 s of the promotion, for one connect every 3 s per worker while Redis is away.
        return super()._ensure_connection(errback, max_retries, interval_start, interval_step,
                                          interval_max, **kwargs)


class BrokerAMQP(AMQP):
    Connection = BrokerConnection


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask, amqp=BrokerAMQP)
    celery_app.config_from_object(settings(app.config))
    celery_app.set_default()
    celery_app.autodiscover_tasks(["app"], force=False)
    # Tasks succeeded/failed/retried and run times, served by each worker (docs/monitoring.md).
    init_task_metrics(app.config["WORKER_METRICS_HOST"], app.config["WORKER_METRICS_PORT"])
    app.extensions["celery"] = celery_app
    return celery_app
