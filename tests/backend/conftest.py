"""Integration fixtures: real PostgreSQL, Redis, Celery workers (both pools), beat and gunicorn.

Nothing is mocked and no Celery task runs eagerly. Services come from the environment
(TEST_DATABASE_URL / TEST_REDIS_URL, used as they are) or, when those are not set, from
PostgreSQL and Redis instances private to this pytest session, under .data/test/run-<pid>,
started by backend/scripts/localstack.sh (which installs the Debian packages on a fresh
machine): every session starts from an empty database and an empty Redis, and sessions running
at the same time (several people or checkouts on one machine) do not disturb each other.

Every process a fixture starts is stopped at the end of the session, also when tests fail or
pytest is interrupted (Ctrl-C / SIGTERM). If pytest is killed, gunicorn and Celery get SIGTERM
from the kernel (pdeathsig), and the next session stops and removes the PostgreSQL/Redis left
in a dead session's run directory.

Session fixtures:  stack_env (dict of environment variables for the app processes),
                   celery_workers (io: gevent -c 1000; cpu: prefork -c 2), beat,
                   server (base URL of a real gunicorn with the gevent-websocket worker).
Test fixtures:     api (apiclient.API on the server), register_user (-> (user, token)),
                   make_app(**overrides) / app / client (in-process Flask app on the same
                   services), db (a SQLAlchemy Session on the test database).
Logs: .data/test/logs/<name>-<pid>.log (gunicorn, celery-io, celery-cpu, celery-beat; kept two
days); PostgreSQL/Redis logs in .data/test/run-<pid>/logs until the next session. The tail of a
log is printed when its process fails to come up.

Tests never clean tables and never flush Redis: they make unique names (uuid suffixes).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BACKEND = ROOT / "backend"
TESTDATA = ROOT / ".data" / "test"
LOGS = TESTDATA / "logs"
RUN_DIR = TESTDATA / f"run-{os.getpid()}"  # this session's PostgreSQL and Redis
LOCALSTACK = BACKEND / "scripts" / "localstack.sh"
VENV_BIN = Path(sys.executable).parent
TEST_DB_NAME = "synspirit_test"

# `import app` and the tests' own helper modules (apiclient, waiting).
for _p in (str(BACKEND), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from apiclient import API  # noqa: E402
from processes import stop_processes  # noqa: E402

# --- process bookkeeping -------------------------------------------------------------------------

_PROCS: dict[str, tuple[subprocess.Popen, Path]] = {}
_STACK_STARTED: list[str] = []  # non-empty while this session's RUN_DIR services may run


# `setpriv --pdeathsig TERM` (util-linux): the child gets SIGTERM when pytest dies, even from
# SIGKILL, so no gunicorn/celery outlives the session (no preexec_fn: pytest may have threads).
_PDEATHSIG = (["setpriv", "--pdeathsig", "TERM", "--"]
              if shutil.which("setpriv") and subprocess.run(
                  ["setpriv", "--pdeathsig", "TERM", "--", "true"], capture_output=True,
                  check=False).returncode == 0
              else [])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(name: str, argv: list[str], env: dict) -> subprocess.Popen:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}-{os.getpid()}.log"
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%F %T')} {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [*_PDEATHSIG, *argv], cwd=BACKEND, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _PROCS[name] = (proc, log)
    return proc


def _stop(*names: str, timeout: float = 20.0) -> None:
    """TERM the processes (warm shutdown, all at once), wait, then KILL their process groups."""
    stop_processes([entry[0] for entry in (_PROCS.pop(n, None) for n in names) if entry], timeout)


def _localstack(*args: str) -> dict[str, str]:
    """Run localstack.sh; return the variables of its `export K='V'` lines."""
    done = subprocess.run(["bash", str(LOCALSTACK), *args], capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    if done.stderr.strip():
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"localstack.sh {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    out = {}
    for line in done.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            out[key] = shlex.split(value)[0] if value.strip() else ""
    return out


def _stop_stack(run_dir: Path, remove: bool) -> None:
    """Stop the PostgreSQL/Redis of a run directory; remove it (or just its data)."""
    subprocess.run(["bash", str(LOCALSTACK), "stop", str(run_dir)], capture_output=True,
                   timeout=120, check=False, stdin=subprocess.DEVNULL)
    pg = run_dir / "pg"
    targets = [run_dir] if remove else [run_dir / "redis", pg]
    if pg.is_symlink():  # data kept under /var/tmp (see localstack.sh)
        targets.append(pg.resolve().parent)
    for target in targets:
        if target.is_symlink():
            target.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)


def _prune_dead_runs() -> None:
    """Stop and remove what sessions that no longer run left behind; drop old logs."""
    for run_dir in TESTDATA.glob("run-*"):
        pid = run_dir.name.removeprefix("run-")
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            _stop_stack(run_dir, remove=True)
    for log in LOGS.glob("*.log"):
        with contextlib.suppress(OSError):
            if time.time() - log.stat().st_mtime > 2 * 86400:
                log.unlink()


def _stop_everything() -> None:
    _stop(*list(_PROCS), timeout=10)
    if _STACK_STARTED:
        _STACK_STARTED.clear()
        _stop_stack(RUN_DIR, remove=False)


atexit.register(_stop_everything)


def _sigterm(signum, frame):  # turn SIGTERM into an interrupt so that teardown runs
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _sigterm)
    # A hung test must not hang CI: default per-test timeout (signal method: teardown runs).
    if (hasattr(config.option, "timeout") and config.option.timeout is None
            and not os.environ.get("PYTEST_TIMEOUT")):
        config.option.timeout = 600


def pytest_unconfigure(config):
    _stop_everything()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fail_with_log(name: str, message: str):
    entry = _PROCS.get(name)
    log = entry[1] if entry else LOGS / f"{name}-{os.getpid()}.log"
    _stop(name)
    pytest.fail(f"{message}\n--- last lines of {log} ---\n{_tail(log)}", pytrace=False)


# --- services ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Environment for the app processes: DATABASE_URL (a fresh database for this session),
    REDIS_URL, a random SECRET_KEY, SYNSPIRIT_ENV=production; migrations applied."""
    db_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not (db_url and redis_url):
        TESTDATA.mkdir(parents=True, exist_ok=True)
        _prune_dead_runs()
        args = ["start", str(RUN_DIR), "--fast", "--db", TEST_DB_NAME]
        if db_url:
            args += ["--only", "redis"]
        elif redis_url:
            args += ["--only", "pg"]
        _STACK_STARTED.append(str(RUN_DIR))
        got = _localstack(*args)
        db_url = db_url or got["DATABASE_URL"]
        redis_url = redis_url or got["REDIS_URL"]
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "SYNSPIRIT_ENV": "production",
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=BACKEND,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        pytest.fail(f"migrations failed:\n{done.stdout}\n{done.stderr[-4000:]}", pytrace=False)
    yield env
    if _STACK_STARTED:
        _STACK_STARTED.clear()
        _stop_stack(RUN_DIR, remove=False)


def _celery_ping(broker_url: str, names: list[str], timeout: float = 1.0) -> set[str]:
    """Names of the given workers that answer a broadcast ping (a bare Celery client: the
    backend's app is not imported into the test process)."""
    from celery import Celery

    client = Celery("synspirit-test-ping", broker=broker_url)
    try:
        replies = client.control.ping(destination=names, timeout=timeout) or []
    finally:
        client.close()
    return {name for reply in replies for name in reply}


@pytest.fixture(scope="session")
def celery_workers(stack_env) -> dict[str, str]:
    """The io worker (gevent pool, -c 1000) and the cpu worker (prefork, -c 2), real processes.
    Yields {"io": nodename, "cpu": nodename}."""
    host = socket.gethostname()
    tag = uuid.uuid4().hex[:6]
    names = {"io": f"io-{tag}@{host}", "cpu": f"cpu-{tag}@{host}"}
    celery = str(VENV_BIN / "celery")
    _spawn("celery-io", [celery, "-A", "app.celery_utils", "worker", "--pool=gevent", "-c", "1000",
                         "-O", "fair", "--prefetch-multiplier=1", "-Q", "io", "-n", names["io"],
                         "--loglevel=INFO"], stack_env)
    _spawn("celery-cpu", [celery, "-A", "app.celery_utils", "worker", "--pool=prefork", "-c", "2",
                          "-Q", "cpu", "-n", names["cpu"], "--loglevel=INFO"], stack_env)
    try:
        deadline = time.monotonic() + 120
        waiting = set(names.values())
        while waiting:
            for proc_name in ("celery-io", "celery-cpu"):
                proc, _ = _PROCS[proc_name]
                if proc.poll() is not None:
                    _stop("celery-io" if proc_name == "celery-cpu" else "celery-cpu")
                    _fail_with_log(proc_name, f"{proc_name} exited ({proc.returncode}) while starting")
            if time.monotonic() > deadline:
                for proc_name in ("celery-io", "celery-cpu"):
                    sys.stderr.write(f"--- {proc_name} ---\n{_tail(_PROCS[proc_name][1])}\n")
                pytest.fail(f"Celery workers did not answer a ping: {sorted(waiting)}", pytrace=False)
            waiting -= _celery_ping(stack_env["REDIS_URL"], sorted(waiting))
        yield names
    finally:
        _stop("celery-io", "celery-cpu")


@pytest.fixture(scope="session")
def beat(stack_env) -> None:
    """celery beat (the view flush every second, the hot rankings every minute)."""
    schedule_dir = RUN_DIR if RUN_DIR.exists() else LOGS
    schedule_dir.mkdir(parents=True, exist_ok=True)
    schedule = schedule_dir / f"celerybeat-schedule-{os.getpid()}"
    for leftover in schedule_dir.glob(f"{schedule.name}*"):
        leftover.unlink()
    proc = _spawn("celery-beat", [str(VENV_BIN / "celery"), "-A", "app.celery_utils", "beat",
                                  "-s", str(schedule), "--loglevel=INFO"], stack_env)
    try:
        log = _PROCS["celery-beat"][1]
        deadline = time.monotonic() + 60
        start = log.stat().st_size if log.exists() else 0
        while True:
            if proc.poll() is not None:
                _fail_with_log("celery-beat", f"celery beat exited ({proc.returncode})")
            text = log.read_bytes()[start:].decode(errors="replace") if log.exists() else ""
            if "beat: Starting" in text:
                break
            if time.monotonic() > deadline:
                _fail_with_log("celery-beat", "celery beat did not start within 60 s")
            time.sleep(0.2)
        yield
    finally:
        _stop("celery-beat")


@pytest.fixture(scope="session")
def server(stack_env) -> str:
    """Base URL (http://127.0.0.1:PORT) of a real gunicorn with the gevent-websocket worker."""
    port = _free_port()
    env = {**stack_env, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    proc = _spawn("gunicorn", [
        str(VENV_BIN / "gunicorn"),
        "--worker-class", "geventwebsocket.gunicorn.workers.GeventWebSocketWorker", "-w", "1",
        "--worker-connections", "2000", "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
        "--no-control-socket", "run:app",
    ], env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                _fail_with_log("gunicorn", f"gunicorn exited ({proc.returncode}) while starting")
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                _fail_with_log("gunicorn", f"{base}/healthz did not answer within 90 s")
            time.sleep(0.2)
        yield base
    finally:
        _stop("gunicorn")


@pytest.fixture(scope="session")
def live_stack(server, celery_workers, beat) -> str:
    """Everything running (web, io and cpu workers, beat); yields the base URL."""
    return server


# --- per-test helpers ----------------------------------------------------------------------------

@pytest.fixture
def api(server) -> API:
    return API(server)


@pytest.fixture
def register_user(api):
    """register_user(prefix="u") -> (user, token), a new user with a unique name."""
    def register(prefix: str = "u"):
        return api.register(prefix)
    return register


@pytest.fixture
def make_app(stack_env, monkeypatch):
    """make_app(**config_overrides) -> a Flask app from create_app() on the test services."""
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)

    def make(**overrides):
        from app import create_app

        return create_app(overrides)
    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def _db_engine(stack_env):
    import sqlalchemy

    engine = sqlalchemy.create_engine(stack_env["DATABASE_URL"], pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture
def db(_db_engine):
    """A SQLAlchemy Session on the test database (READ COMMITTED; call db.rollback() to end
    the current transaction and see newer commits)."""
    from sqlalchemy.orm import Session

    session = Session(bind=_db_engine)
    try:
        yield session
    finally:
        with contextlib.suppress(Exception):
            session.rollback()
        session.close()
