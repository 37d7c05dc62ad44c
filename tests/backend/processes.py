"""Stopping the processes a test stack started (used by conftest.py and tests/bench/run.py)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def stop_processes(procs: list[subprocess.Popen], timeout: float) -> None:
    """TERM the processes (warm shutdown, all at once), wait up to `timeout` seconds, then KILL
    their process groups (each was started with start_new_session=True)."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
