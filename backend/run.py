"""WSGI entry point: ``gunicorn ... run:app``.

gevent must patch the standard library, and psycogreen must make psycopg2 cooperative,
before anything else is imported; otherwise one slow query blocks every request in the worker.
"""
from gevent import monkey

monkey.patch_all()

import psycogreen.gevent  # noqa: E402

psycogreen.gevent.patch_psycopg()

from app import create_app  # noqa: E402

app = create_app()

if __name__ == "__main__":  # a development convenience; production runs gunicorn
    from app.extensions import socketio  # noqa: E402

    socketio.run(app, host=app.config["API_HOST"], port=app.config["API_PORT"])
