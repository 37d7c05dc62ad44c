"""/readyz answers 503 quickly when PostgreSQL and Redis do not answer at all (a cut network),
instead of hanging for the sum of the clients' timeouts and retries (make chaos, network cut).

A real gunicorn, configured as in production, whose DATABASE_URL and REDIS_URL
point at a "black hole": a listening socket that never accepts, so connections open (the
kernel's backlog) but nothing is ever answered, as when packets to data1 are dropped."""
from __future__ import annotations

import contextlib
import socket
import time

import requests

from testkit.processes import free_port, web_command


def test_readyz_answers_503_quickly_when_the_data_stores_do_not_answer(stack_env, procs):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # never accept(): a connect succeeds, nothing is ever read or answered
    port = hole.getsockname()[1]
    env = {**stack_env,
           "DATABASE_URL": f"postgresql+psycopg2://synspirit:x@127.0.0.1:{port}/synspirit",
           "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    web = free_port()
    proc = procs.spawn("gunicorn-blackhole", web_command(web), env)
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "gunicorn exited while starting"
        for _ in range(2):  # a second time too: the interrupted connections must not be reused
            t = time.monotonic()
            r = requests.get(base + "/readyz", timeout=30)
            took = time.monotonic() - t
            assert r.status_code == 503, r.text
            checks = r.json()["checks"]
            assert checks["postgresql"].startswith("unavailable"), checks
            assert checks["redis"].startswith("unavailable"), checks
            # 2.5 s per data store (READY_TIMEOUT) plus margin; without the deadline it took the
            # sum of the connect/socket timeouts and redis-py's retries (over 10 s).
            assert took < 7, f"/readyz took {took:.1f} s: {checks}"
    finally:
        procs.stop("gunicorn-blackhole")
        hole.close()
