"""gunicorn's settings for every web instance, the one place they are written:

    gunicorn --config python:app.gunicorn_config --bind HOST:PORT run:app

used by systemd/synspirit-web@.service (production and the lab), start.sh, the backend suite and
`make bench`, so what the tests run is what production runs. Only the address differs per
launch; the values below that come from the environment are set per host by the deployment
(/etc/synspirit/web.env) and default to production's.
"""
import os

# geventwebsocket's worker that closes kept-alive connections once a graceful stop began
# (gunicorn_worker.py). ONE worker per instance: Socket.IO long-polling needs every request of
# a session on the same process; nginx hashes clients onto instances, so a host scales with
# more instances (ports), not with workers. A gevent worker is concurrent by itself.
worker_class = "app.gunicorn_worker.Worker"
workers = 1
# Sockets one instance holds, websockets and HTTP together: `make bench` held 10,000
# websockets on one instance (docs/performance.md); the unit's LimitNOFILE leaves room for them.
worker_connections = int(os.environ.get("SYNSPIRIT_WEB_WORKER_CONNECTIONS") or 12000)
# The worker's heartbeat: a CPU-starved worker missed gunicorn's default 30 s
# (docs/performance.md, run 2's WORKER TIMEOUT).
timeout = int(os.environ.get("SYNSPIRIT_WEB_TIMEOUT") or 120)
# Requests in flight get this long after SIGTERM; systemd's TimeoutStopSec (25) must stay above.
graceful_timeout = 15
# Whose X-Forwarded-* headers gunicorn believes: the load balancers.
forwarded_allow_ips = os.environ.get("SYNSPIRIT_WEB_FORWARDED_ALLOW_IPS") or "127.0.0.1"
# gunicorn >= 25.1 otherwise creates a control socket under ~/.gunicorn.
control_socket_disable = True


def on_starting(server):
    """jieba's dictionary loaded by the master before it listens, so the worker inherits it: a
    worker that loads it after the master listens leaves nginx's first requests waiting (over
    15 s on a booting host, docs/reliability.md). Only jieba here: the application itself is
    imported by the worker, after gevent's patching."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()


def post_worker_init(worker):
    """app/search.py's handle on jieba set before the first request (the dictionary is already
    loaded: on_starting)."""
    from app.search import load_dictionary

    load_dictionary()
