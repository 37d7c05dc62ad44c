"""The web instances' gunicorn worker (app.gunicorn_worker.Worker) closes kept-alive
connections once a graceful stop began, so a load balancer stops sending requests on them
before --graceful-timeout kills them (a POST cut that way is a 502: make chaos, power-off)."""
from __future__ import annotations

import contextlib
import signal
import socket
import time

import requests

from testkit.processes import free_port, web_command

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _serves(port: int) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    return False


def test_connections_close_once_a_graceful_stop_began(stack_env, procs):
    port = free_port()
    proc = procs.spawn("gunicorn-graceful", web_command(port), stack_env)
    try:
        # Serving, not only listening: the arbiter accepts connections before its worker has
        # loaded the app (over 5 s on a busy machine).
        deadline = time.monotonic() + 90
        while not _serves(port):
            assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(REQUEST)
        first = _response(sock)
        assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
        proc.send_signal(signal.SIGTERM)  # graceful stop: the kept-alive connection stays open
        time.sleep(2.5)  # the worker notices within a second and closes its listener
        sock.sendall(REQUEST)
        second = _response(sock)
        assert second.startswith(b"HTTP/1.1 200"), second[:200]
        assert b"connection: close" in second.lower(), second[:400]
        sock.settimeout(5)
        assert sock.recv(1) == b"", "the connection stayed open after Connection: close"
        sock.close()
    finally:
        procs.stop("gunicorn-graceful")
