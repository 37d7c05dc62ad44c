"""Polling with a deadline (for effects that a Celery worker produces asynchronously)."""
from __future__ import annotations

import time


def wait_until(probe, timeout: float = 5.0, interval: float = 0.05):
    """Call probe() until it returns a truthy value; return it, or the last value on timeout."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value
