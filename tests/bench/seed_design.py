"""The seed document's design of counting, for `make bench --only seed` (seed_compare.py): the same
Flask app (app factory, same database and Redis), but a Celery task `.delay()`ed for every view
and every like, as the seed writes it, instead of SynSpirit's buffered views and coalesced
recounts (backend/app/counting.py).

    web:    gunicorn -w $((2 * nproc + 1)) -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker
                     --worker-connections 2000 --pythonpath tests/bench seed_design:app
    worker: celery -A seed_design:celery_app worker --pool=gevent -c 1000 -O fair
                     --prefetch-multiplier=1 -Q seed-io

What differs from SynSpirit, and nothing else (the routes, serializers, item cache, auth, rate
limits and the recount statement are SynSpirit's own):
- a read of a post (GET /api/posts/<id>, 200) no longer buffers its view in Redis; it reads the
  counts as before and then `update_post_view_count.delay(post_id)`, a task doing
  `UPDATE posts SET views_count = views_count + 1 WHERE id = :id` (registered here as
  `seed.update_post_view_count`: app.tasks.update_post_view_count is SynSpirit's flush alias);
- a like (or undo) of a post no longer marks it dirty for one coalesced recount; it calls
  `update_post_counts.delay(post_id)`, SynSpirit's own task, which with an id recounts that one
  post from its rows (one statement) and emits its counts, as the seed's task does;
- both tasks go to the queue `seed-io`, drained only by the seed's worker, so that SynSpirit's
  io worker (same Redis) takes none of them and the backlog is that queue's length.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend"))

from app.worker_pool import pool_from_argv  # noqa: E402  (imports nothing else)

if pool_from_argv(sys.argv) == "gevent" or "gunicorn" in Path(sys.argv[0]).name:
    from gevent import monkey  # as run.py and app.celery_utils

    monkey.patch_all()

    import psycogreen.gevent

    psycogreen.gevent.patch_psycopg()

from app import counting, create_app, tasks  # noqa: E402
from app.actions import routes as action_routes  # noqa: E402
from app.extensions import db  # noqa: E402
from flask import request  # noqa: E402
from sqlalchemy import text  # noqa: E402

QUEUE = "seed-io"
VIEW_TASK = "seed.update_post_view_count"

app = create_app()
celery_app = app.extensions["celery"]
celery_app.conf.task_routes = {**(celery_app.conf.task_routes or {}),
                               VIEW_TASK: {"queue": QUEUE},
                               tasks.update_post_counts.name: {"queue": QUEUE}}


@celery_app.task(name=VIEW_TASK)
def update_post_view_count(post_id: int) -> None:
    """The seed's view counter: one UPDATE per view."""
    db.session.execute(text("UPDATE posts SET views_count = views_count + 1 WHERE id = :id"),
                       {"id": post_id})
    db.session.commit()


_view_and_read = counting.view_and_read


def _read_without_counting(redis, kind, content_id, count=True, viewer="", dedup_seconds=0):
    """content/routes.py `show` reads the counts and the body's version as before; the view is
    not buffered (the task below counts it) and no flush is scheduled."""
    pending, _schedule, counts, version = _view_and_read(redis, kind, content_id, count=False)
    return pending, False, counts, version


counting.view_and_read = _read_without_counting

_recount = action_routes.recount


def _recount_per_action(target_type: str, target_id: int) -> None:
    if target_type == "post":
        tasks.update_post_counts.delay(target_id)
    else:
        _recount(target_type, target_id)


action_routes.recount = _recount_per_action


@app.after_request
def _count_view(response):
    if request.endpoint == "posts.show" and request.method == "GET" \
            and response.status_code == 200:
        update_post_view_count.delay(request.view_args["item_id"])
    return response
