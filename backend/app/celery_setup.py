"""Celery bound to Flask (the pattern of Flask's own docs): configuration, the shared retry
policy and a task base class that runs every task inside the Flask app context."""
from __future__ import annotations

import redis.exceptions
from celery import Celery, Task
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, OperationalError

from .task_metrics import init_task_metrics

# One retry policy for every task: a backing service that is briefly away (a restart of
# PostgreSQL or Redis) is retried with exponential backoff and jitter, not lost.
RETRY_KWARGS = {
    "autoretry_for": (
        OperationalError,
        DBAPIError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
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
# tests/backend/test_redelivery.py checks it with a real worker killed mid-task.
RESTORE_SWEEP = {"unacked_restore_interval": 5, "unacked_restore_throttle": 1}

CPU_TASKS = ("app.tasks.render_article", "app.tasks.recompute_hot_scores",
             "app.tasks.render_pending_articles")


def celery_config(flask_config: dict) -> dict:
    url = flask_config["REDIS_URL"]
    visibility = flask_config.get("CELERY_VISIBILITY_TIMEOUT", 60)
    return {
        "broker_url": url,
        "result_backend": url,
        # Bounded socket waits: a Redis host that vanished (network cut) fails fast instead of
        # hanging a web request or a worker.
        "broker_transport_options": {"visibility_timeout": visibility, **RESTORE_SWEEP,
                                     "socket_connect_timeout": 3, "socket_timeout": 10},
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "broker_pool_limit": 10,
        "broker_connection_retry_on_startup": True,
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
        "beat_schedule": {
            # Views are flushed within a second by the flush that the first view after a flush
            # schedules; this catches any buffered view whose scheduled flush was lost. (At 1 s
            # it doubled the writes per 1,000 views in `make bench`.)
            "flush-views": {"task": "app.tasks.flush_view_counts", "schedule": 10.0,
                            "options": {"expires": 9}},
            "hot-rankings": {"task": "app.tasks.recompute_hot_scores", "schedule": 60.0,
                             "options": {"expires": 55}},
            # Safety nets for work whose task could not be enqueued (broker away).
            "reconcile-counts": {"task": "app.tasks.reconcile_counts", "schedule": 60.0,
                                 "options": {"expires": 55}},
            "render-pending": {"task": "app.tasks.render_pending_articles", "schedule": 60.0,
                               "options": {"expires": 55}},
        },
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app.config))
    celery_app.set_default()
    celery_app.autodiscover_tasks(["app"], force=False)
    # Tasks succeeded/failed/retried and run times, served by each worker (docs/monitoring.md).
    init_task_metrics(app.config["WORKER_METRICS_HOST"], app.config["WORKER_METRICS_PORT"])
    app.extensions["celery"] = celery_app
    return celery_app
