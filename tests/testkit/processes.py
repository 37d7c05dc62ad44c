"""The processes a test session or the bench starts (gunicorn, Celery workers, beat): each in a
process group of its own with its output in a log file, stopped at the end even when the
starter dies."""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"
VENV_BIN = Path(sys.executable).parent
# What systemd/synspirit-worker@.service passes every Celery worker (the reason is there).
WORKER_OPTIONS = ["--without-mingle", "--without-gossip", "--without-heartbeat"]

# `setpriv --pdeathsig TERM` (util-linux): the child gets SIGTERM when its starter dies, even
# from SIGKILL, so no gunicorn/celery outlives it (no preexec_fn: pytest may have threads).
PDEATHSIG = (["setpriv", "--pdeathsig", "TERM", "--"]
             if shutil.which("setpriv") and subprocess.run(
                 ["setpriv", "--pdeathsig", "TERM", "--", "true"], capture_output=True,
                 check=False).returncode == 0
             else [])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """A web instance as production runs it (backend/app/gunicorn_config.py: the worker class,
    one worker, its timeouts), listening on host:port. Start it in backend/."""
    return [str(VENV_BIN / "gunicorn"), "--config", "python:app.gunicorn_config",
            "--bind", f"{host}:{port}", "run:app"]


def flask(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`flask --app app ARGS` in backend/ with env over this environment, as operators run it."""
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "app", *args], cwd=BACKEND,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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


class Processes:
    """Named processes, each logging to LOGS/<name><log_suffix>.log, each started with the
    environment base_env (read at each start) plus what spawn() is given."""

    def __init__(self, logs: Path, log_suffix: str = "", base_env=None):
        self.logs, self.log_suffix, self.base_env = logs, log_suffix, base_env
        self.running: dict[str, tuple[subprocess.Popen, Path]] = {}

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}{self.log_suffix}.log"

    def spawn(self, name: str, argv: list[str], env: dict | None = None,
              cwd: Path = BACKEND) -> subprocess.Popen:
        """Start argv in cwd (backend/ unless told)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.log_of(name)
        with open(log, "ab") as out:
            out.write(f"\n==== {time.strftime('%F %T')} {shlex.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [*PDEATHSIG, *argv], cwd=cwd, env={**(self.base_env or {}), **(env or {})},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.running[name] = (proc, log)
        return proc

    def proc(self, name: str) -> subprocess.Popen:
        return self.running[name][0]

    def stop(self, *names: str, timeout: float = 20.0) -> None:
        """Stop the named processes (all when none is named)."""
        entries = [self.running.pop(n, None) for n in (names or list(self.running))]
        stop_processes([entry[0] for entry in entries if entry], timeout)

    def exited(self) -> tuple[str, int, str] | None:
        """(name, exit status, last lines of its log) of a process that is no longer running."""
        for name, (proc, log) in self.running.items():
            if proc.poll() is not None:
                return name, proc.returncode, tail(log, 30)
        return None


def celery_ping(broker_url: str, names: list[str], timeout: float = 1.0) -> set[str]:
    """Names of the given Celery workers that answer a broadcast ping (a bare Celery client:
    the backend's app is not imported)."""
    from celery import Celery

    client = Celery("synspirit-test-ping", broker=broker_url)
    try:
        replies = client.control.ping(destination=names, timeout=timeout) or []
    finally:
        client.close()
    return {name for reply in replies for name in reply}
