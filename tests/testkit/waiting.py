"""Polling with a deadline, for effects that happen elsewhere (a Celery worker, a lab host)."""
from __future__ import annotations

import time


def wait_until(probe, timeout: float = 5.0, interval: float = 0.05, ignore=()):
    """Call probe() until it returns something truthy or `timeout` seconds pass; return its last
    value. An exception of a type in `ignore` counts as a falsy value (a host may be away while
    we wait)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except ignore:
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
