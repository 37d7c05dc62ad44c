"""A Celery app with one no-op task, for the io-queue floor of `make bench`.

`celery -A bench_noop worker --pool=gevent -c 1000 -O fair --prefetch-multiplier=1 -Q bench-noop`
(cwd tests/bench, backend/ on PYTHONPATH). It uses SynSpirit's own Celery configuration
(app.celery_config.settings: broker, events, visibility timeout) and the counter tasks'
delivery options (acks_late, reject_on_worker_lost), so the only difference from draining
`app.tasks.update_post_counts` is the task body: Flask app context, one UPDATE, one emit.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend"))

from app.worker_pool import pool_from_argv  # noqa: E402  (imports nothing else)

if pool_from_argv(sys.argv) == "gevent":  # the same patching as app.celery_utils
    from gevent import monkey

    monkey.patch_all()

import os  # noqa: E402

from app.celery_config import IDEMPOTENT, settings  # noqa: E402
from celery import Celery  # noqa: E402

QUEUE = "bench-noop"

celery_app = Celery("bench_noop")
_cfg = settings({"REDIS_URL": os.environ["REDIS_URL"]})
_cfg.pop("beat_schedule", None)
_cfg["task_default_queue"] = QUEUE
_cfg["task_routes"] = {}
celery_app.config_from_object(_cfg)


@celery_app.task(name="bench.noop", **IDEMPOTENT)
def noop(i=None):
    return None
