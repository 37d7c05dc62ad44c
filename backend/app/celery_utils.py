"""The Celery application: ``celery -A app.celery_utils worker|beat``.

Like run.py, a gevent-pool worker makes I/O cooperative before anything else is imported, so
that its 1,000 greenlets never wait on each other's PostgreSQL or Redis calls. A prefork (cpu)
worker is left unpatched: its pool's supervisor threads deadlock under monkey-patching (seen
here: a patched prefork worker never took a task from the cpu queue)."""
import sys

from .worker_pool import pool_from_argv

if pool_from_argv(sys.argv) == "gevent":
    from gevent import monkey

    monkey.patch_all()

    import psycogreen.gevent

    psycogreen.gevent.patch_psycopg()

from . import create_app  # noqa: E402

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

from . import tasks  # noqa: E402,F401  (registers the tasks with celery_app)
