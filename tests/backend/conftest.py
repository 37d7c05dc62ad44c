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

Session fixtures:  stack_env (dict of environment variables for the app processes; rate limits
                   for registrations and writes far above the defaults),
                   procs (testkit.processes.Processes: start and stop more processes),
                   celery_workers (io: gevent -c 1000; cpu: prefork -c 2), beat,
                   server (base URL of a real gunicorn, configured as in production).
Test fixtures:     api (testkit.apiclient.API on the server), register_user (-> (user, token)),
                   make_app(**overrides) / app / client (in-process Flask app on the same
                   services), db (a SQLAlchemy Session on the test database).
Every test that uses stack_env (directly or through another fixture) is marked `stack`
(tests/pytest.ini): `pytest tests/backend -m "not stack"` runs the ones that need no service.
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
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from testkit import localstack
from testkit.apiclient import API
from testkit.processes import (
    BACKEND,
    VENV_BIN,
    WORKER_OPTIONS,
    Processes,
    celery_ping,
    flask,
    free_port,
    tail,
    web_command,
)
from testkit.waiting import wait_until

TESTDATA = BACKEND.parent / ".data" / "test"
LOGS = TESTDATA / "logs"
RUN_DIR = TESTDATA / f"run-{os.getpid()}"  # this session's PostgreSQL and Redis
TEST_DB_NAME = "synspirit_test"

_PROCS = Processes(LOGS, log_suffix=f"-{os.getpid()}", base_env=os.environ)
_STACK_STARTED: list[str] = []  # non-empty while this session's RUN_DIR services may run


def _prune_dead_runs() -> None:
    """Stop and remove what sessions that no longer run left behind; drop old logs."""
    for run_dir in TESTDATA.glob("run-*"):
        pid = run_dir.name.removeprefix("run-")
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            localstack.stop(run_dir, remove="all")
    for log in LOGS.glob("*.log"):
        with contextlib.suppress(OSError):
            if time.time() - log.stat().st_mtime > 2 * 86400:
                log.unlink()


def _stop_everything() -> None:
    _PROCS.stop(timeout=10)
    if _STACK_STARTED:
        _STACK_STARTED.clear()
        localstack.stop(RUN_DIR, remove="data")


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


def pytest_collection_modifyitems(items):
    for item in items:
        if "stack_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


def _fail_with_log(name: str, message: str):
    log = _PROCS.log_of(name)
    _PROCS.stop(name)
    pytest.fail(f"{message}\n--- last lines of {log} ---\n{tail(log)}", pytrace=False)


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
        got = localstack.localstack(*args)
        db_url = db_url or got["DATABASE_URL"]
        redis_url = redis_url or got["REDIS_URL"]
        _REDIS_ADMIN_URL[:] = [got["REDIS_ADMIN_URL"]] if "REDIS_ADMIN_URL" in got else []
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "SYNSPIRIT_ENV": "production",
        "PYTHONUNBUFFERED": "1",
        # The suite registers hundreds of users from 127.0.0.1 and the fuzzer writes as fast as
        # it can: far above the defaults, which the rate-limit tests check with their own values.
        "REGISTER_RATE_LIMIT": "100000 per minute",
        "WRITE_RATE_LIMIT": "100000 per minute",
        # Failed logins too: the API tests send dozens of wrong passwords from 127.0.0.1, and the
        # browser test that follows them within the minute got 429 on its own sign-in.
        "LOGIN_RATE_LIMIT": "100000 per minute",
        # Every read counts a view: the counting tests read one post many times as one user
        # (test_view_dedup.py checks the window with its own values).
        "VIEW_DEDUP_SECONDS": "0",
        # Admins by name (tests/backend/api/test_roles.py), spaced and cased as an operator may.
        "SYNSPIRIT_ADMINS": " Site_Admin ,nobody_yet",
    }
    done = flask(env, "db", "upgrade")
    if done.returncode != 0:
        pytest.fail(f"migrations failed:\n{done.stdout}\n{done.stderr[-4000:]}", pytrace=False)
    yield env
    if _STACK_STARTED:
        _STACK_STARTED.clear()
        localstack.stop(RUN_DIR, remove="data")


_REDIS_ADMIN_URL: list[str] = []  # localstack's admin user, when it started the suite's Redis


@pytest.fixture(scope="session")
def redis_admin_url(stack_env) -> str:
    """The suite's Redis as its admin user (the application's user may not CONFIG or FLUSHALL):
    TEST_REDIS_ADMIN_URL, or localstack's admin, or REDIS_URL for a Redis given without one."""
    return (os.environ.get("TEST_REDIS_ADMIN_URL") or next(iter(_REDIS_ADMIN_URL), None)
            or stack_env["REDIS_URL"])


@pytest.fixture(scope="session")
def procs(stack_env) -> Processes:
    """The session's processes: procs.spawn(name, argv, env) starts one in backend/ with this
    process's environment plus env, logged to .data/test/logs/<name>-<pid>.log, stopped at the
    end of the session at the latest (procs.stop(name) earlier)."""
    return _PROCS


@pytest.fixture(scope="session")
def celery_workers(stack_env) -> dict[str, str]:
    """The io worker (gevent pool, -c 1000) and the cpu worker (prefork, -c 2), real processes.
    Yields {"io": nodename, "cpu": nodename}."""
    host = socket.gethostname()
    tag = uuid.uuid4().hex[:6]
    names = {"io": f"io-{tag}@{host}", "cpu": f"cpu-{tag}@{host}"}
    celery = str(VENV_BIN / "celery")
    _PROCS.spawn("celery-io", [celery, "-A", "app.celery_utils", "worker", "--pool=gevent", "-c", "1000",
                        "-O", "fair", "--prefetch-multiplier=1", "-Q", "io", "-n", names["io"],
                        *WORKER_OPTIONS, "--loglevel=INFO"], stack_env)
    _PROCS.spawn("celery-cpu", [celery, "-A", "app.celery_utils", "worker", "--pool=prefork", "-c", "2",
                         "-Q", "cpu", "-n", names["cpu"], *WORKER_OPTIONS,
                         "--loglevel=INFO"], stack_env)
    try:
        waiting = set(names.values())

        def all_answer() -> bool:
            for proc_name in ("celery-io", "celery-cpu"):
                proc = _PROCS.proc(proc_name)
                if proc.poll() is not None:
                    _PROCS.stop("celery-io" if proc_name == "celery-cpu" else "celery-cpu")
                    _fail_with_log(proc_name, f"{proc_name} exited ({proc.returncode}) while starting")
            waiting.difference_update(celery_ping(stack_env["REDIS_URL"], sorted(waiting)))
            return not waiting

        if not wait_until(all_answer, 120, interval=0):  # each ping waits up to 1 s itself
            for proc_name in ("celery-io", "celery-cpu"):
                sys.stderr.write(f"--- {proc_name} ---\n{tail(_PROCS.log_of(proc_name))}\n")
            pytest.fail(f"Celery workers did not answer a ping: {sorted(waiting)}", pytrace=False)
        yield names
    finally:
        _PROCS.stop("celery-io", "celery-cpu")


@pytest.fixture(scope="session")
def beat(stack_env) -> None:
    """celery beat (the view flush every 10 s, the sweeps every minute), holding the scheduler's
    lock in Redis (app/schedule.py)."""
    proc = _PROCS.spawn("celery-beat", [str(VENV_BIN / "celery"), "-A", "app.celery_utils", "beat",
                                        "--loglevel=INFO"], stack_env)
    try:
        log = _PROCS.log_of("celery-beat")
        start = log.stat().st_size if log.exists() else 0

        def locked() -> bool:
            if proc.poll() is not None:
                _fail_with_log("celery-beat", f"celery beat exited ({proc.returncode})")
            text = log.read_bytes()[start:].decode(errors="replace") if log.exists() else ""
            return "beat: Acquired lock" in text

        if not wait_until(locked, 60, 0.2):
            _fail_with_log("celery-beat", "celery beat did not take the scheduler's lock "
                                          "within 60 s")
        yield
    finally:
        _PROCS.stop("celery-beat")


@pytest.fixture(scope="session")
def server(stack_env) -> str:
    """Base URL (http://127.0.0.1:PORT) of a real gunicorn, configured as in production."""
    port = free_port()
    env = {**stack_env, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    proc = _PROCS.spawn("gunicorn", web_command(port), env)
    base = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                _fail_with_log("gunicorn", f"gunicorn exited ({proc.returncode}) while starting")
            with contextlib.suppress(requests.RequestException):
                return requests.get(base + "/healthz", timeout=2).status_code == 200
            return False

        if not wait_until(answers, 90, 0.2):
            _fail_with_log("gunicorn", f"{base}/healthz did not answer within 90 s")
        yield base
    finally:
        _PROCS.stop("gunicorn")


@pytest.fixture(scope="session")
def live_stack(server, celery_workers, beat) -> str:
    """Everything running (web, io and cpu workers, beat); yields the base URL."""
    return server


# --- per-test helpers ----------------------------------------------------------------------------

@pytest.fixture
def api(server) -> API:
    return API(server)


@pytest.fixture(scope="session")
def site_admin(server) -> str:
    """The token of `site_admin`, an admin because SYNSPIRIT_ADMINS names it (in another case)."""
    resp = API(server).post("/api/auth/register",
                            json={"username": "site_admin", "password": "correct-horse"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["user"]["role"] == "admin"
    return resp.json()["token"]


@pytest.fixture
def moderator(api, site_admin) -> tuple[dict, str]:
    """(user, token) of a new account that site_admin made a moderator."""
    user, token = api.register("mod")
    resp = api.call("PUT", f"/api/users/{user['username']}/role", token=site_admin,
                    json={"role": "moderator"})
    assert resp.status_code == 200, resp.text
    return user, token


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
