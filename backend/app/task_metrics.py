"""Prometheus metrics of the Celery workers (docs/monitoring.md).

Tasks succeeded, failed and retried and their run time, by task name, are counted by Celery
signals in the process that runs the task, and each worker instance serves them over HTTP on
WORKER_METRICS_HOST:WORKER_METRICS_PORT (off when the port is 0). Task events stay off
(celery_config.py): no event stream, no extra exporter process.

A prefork worker runs its tasks in child processes, so the metrics use prometheus_client's
multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set: every process writes its values to
files in that folder and the main process adds them up on each scrape. The folder belongs to
ONE worker instance (systemd gives each synspirit-worker@NAME its own runtime directory) and is
emptied when the worker starts, so the counters start again from 0 after a restart; Prometheus'
rate()/increase() treat that drop as a counter reset. The variable must be in the environment
before prometheus_client is imported, which is why it comes from the unit, not from here.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from celery import signals
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

SUCCEEDED = Counter("synspirit_celery_task_succeeded_total",
                    "Celery tasks that returned normally", ["task"])
FAILED = Counter("synspirit_celery_task_failed_total",
                 "Celery tasks that raised and will not be retried", ["task"])
RETRIED = Counter("synspirit_celery_task_retried_total",
                  "Celery task runs that ended in a retry (the task runs again later)", ["task"])
RUNTIME = Histogram(
    "synspirit_celery_task_runtime_seconds", "Run time of one Celery task run, whatever its end",
    ["task"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# task id -> start (time.monotonic()) of the runs in progress in this process; a gevent pool
# runs many at once.
_started: dict[str, float] = {}
_server_config: dict[str, object] = {"host": "127.0.0.1", "port": 0}


def _multiproc_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def _task_name(sender) -> str:
    return getattr(sender, "name", None) or str(sender)


def _on_prerun(sender=None, task_id=None, **_):
    _started[task_id] = time.monotonic()


def _on_postrun(sender=None, task_id=None, **_):
    started = _started.pop(task_id, None)
    if started is not None:
        RUNTIME.labels(_task_name(sender)).observe(time.monotonic() - started)


def _on_success(sender=None, **_):
    SUCCEEDED.labels(_task_name(sender)).inc()


def _on_failure(sender=None, **_):
    FAILED.labels(_task_name(sender)).inc()


def _on_retry(sender=None, **_):
    RETRIED.labels(_task_name(sender)).inc()


def _on_worker_init(**_):
    """Before the pool forks: forget the values of a previous run of this worker instance."""
    folder = _multiproc_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def _on_worker_ready(**_):
    """Serve /metrics from the worker's main process once its pool runs."""
    port = int(_server_config["port"])
    if not port:
        return
    registry = REGISTRY
    if _multiproc_dir() is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    start_http_server(port, addr=str(_server_config["host"]), registry=registry)
    log.info("task metrics on http://%s:%d/metrics", _server_config["host"], port)


_HANDLERS = (
    (signals.task_prerun, _on_prerun),
    (signals.task_postrun, _on_postrun),
    (signals.task_success, _on_success),
    (signals.task_failure, _on_failure),
    (signals.task_retry, _on_retry),
    (signals.worker_init, _on_worker_init),
    (signals.worker_ready, _on_worker_ready),
)


def init_task_metrics(host: str, port: int) -> None:
    """Count every task this process runs; a worker serves the counts on host:port (0 = not)."""
    _server_config.update(host=host, port=port)
    for signal, handler in _HANDLERS:
        # dispatch_uid: create_app() may run several times in one process (tests).
        signal.connect(handler, weak=False, dispatch_uid=f"synspirit-metrics{handler.__name__}")
