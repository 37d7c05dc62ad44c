"""start.sh: SynSpirit on one machine in the foreground, stopped by Ctrl-C or SIGTERM.

These run the real script (virtualenv check, services, migrations, gunicorn, both Celery
pools, beat) on a free port and check that it serves, then that stopping it leaves nothing
behind. Needs root (private PostgreSQL runs as the postgres user)."""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from testkit.processes import free_port

ROOT = Path(__file__).resolve().parents[3]
LOCALSTACK = ROOT / "backend" / "scripts" / "localstack.sh"

pytestmark = [pytest.mark.stack,  # start.sh starts PostgreSQL and Redis of its own
              pytest.mark.skipif(os.geteuid() != 0, reason="start.sh's private services need root")]


def _procs_mentioning(*needles: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found.append(f"{proc.name}: {cmd}")
    return found


class Output:
    """Collects what the script prints on a pty (or a pipe)."""

    def __init__(self, fd: int):
        self.fd, self.text = fd, ""

    def pump(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    return False
                if not chunk:
                    return False
                self.text += chunk.decode(errors="replace")
        return True

    def wait_for(self, needle: str, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while needle not in self.text and time.monotonic() < end:
            if not self.pump(0.5):
                break
        return needle in self.text


def _wait_exit(pid: int, out: Output, seconds: float) -> int | None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        out.pump(0.3)
    return None


def _check_serving(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    assert requests.get(base + "/healthz", timeout=5).status_code == 200
    ready = requests.get(base + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    # The printed URL opens the web page (tests/backend/browser/ uses it in a browser).
    page = requests.get(base + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "/static/app.js?v=" in page.text


def test_start_sh_runs_everything_and_ctrl_c_stops_it_all(tmp_path):
    """Private PostgreSQL/Redis under its own data folder; Ctrl-C on the terminal stops the
    web instance, both workers, beat and the private services it started."""
    data = ROOT / ".data" / "test" / f"startsh-{os.getpid()}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(API_PORT=str(port), API_HOST="127.0.0.1", SYNSPIRIT_DATA=str(data),
               CPU_CONCURRENCY="1", WORKER_CONNECTIONS="2000")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the script on a terminal, like a person running it
        os.chdir(ROOT)
        os.execve("/bin/bash", ["bash", "./start.sh"], env)
    out = Output(fd)
    try:
        up = out.wait_for("SynSpirit is running", 600)
        assert up, out.text[-4000:]
        assert f"http://127.0.0.1:{port}/" in out.text
        _check_serving(port)
        assert LOCALSTACK.exists()
        status = subprocess.run(["bash", str(LOCALSTACK), "status", str(data)],
                                capture_output=True, text=True)
        assert status.returncode == 0, status.stdout  # both private services run
        key = ROOT / ".data" / "secret_key"
        assert key.stat().st_mode & 0o777 == 0o600
        out.pump(2)
        os.write(fd, b"\x03")  # Ctrl-C
        code = _wait_exit(pid, out, 90)
        assert code is not None, "start.sh did not exit within 90 s of Ctrl-C:\n" + out.text[-3000:]
        pid = 0
        assert "start.sh: stopped" in out.text
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        status = subprocess.run(["bash", str(LOCALSTACK), "status", str(data)],
                                capture_output=True, text=True)
        assert "postgresql: stopped" in status.stdout and "redis: stopped" in status.stdout
        assert _procs_mentioning(str(data), f"127.0.0.1:{port}") == []
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            _wait_exit(pid, out, 60)
        os.close(fd)
        subprocess.run(["bash", str(LOCALSTACK), "stop", str(data)], capture_output=True)
        subprocess.run(["rm", "-rf", str(data)], check=False)


def test_start_sh_uses_given_services_and_sigterm_stops_it(stack_env):
    """With DATABASE_URL/REDIS_URL given it starts no private services, and SIGTERM stops the
    processes it started (but not the given services)."""
    port = free_port()
    env = {**os.environ, **stack_env, "API_PORT": str(port), "API_HOST": "127.0.0.1",
           "CPU_CONCURRENCY": "1", "SYNSPIRIT_DATA": str(ROOT / ".data" / "test" / "startsh-ext")}
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["bash", "./start.sh"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=write_fd, stderr=write_fd, start_new_session=True)
    os.close(write_fd)
    out = Output(read_fd)
    try:
        assert out.wait_for("SynSpirit is running", 600), out.text[-4000:]
        assert "using PostgreSQL and Redis from DATABASE_URL / REDIS_URL" in out.text
        assert "starting PostgreSQL" not in out.text and "starting Redis" not in out.text
        _check_serving(port)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            pytest.fail("start.sh did not exit within 90 s of SIGTERM")
        out.pump(1)
        assert "start.sh: stopped" in out.text
        assert _procs_mentioning(f"127.0.0.1:{port}") == []
        import redis
        import sqlalchemy

        assert redis.Redis.from_url(stack_env["REDIS_URL"]).ping()  # the given services run on
        engine = sqlalchemy.create_engine(stack_env["DATABASE_URL"])
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        engine.dispose()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(read_fd)
