"""The stack the bench measures, started and stopped by the bench itself: private PostgreSQL and
Redis (backend/scripts/localstack.sh), the migrations, one gunicorn web instance as production
runs it, the io and cpu Celery workers and beat; the users and posts seeded through the API;
and what is read back from it (metrics, SQL, the view buffer, CPU seconds, the load average)."""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import DB_NAME, PROFILES, WORKER_CONNECTIONS, BenchError, children, log, proc_cpu
from testkit.localstack import LocalstackError, localstack
from testkit.processes import BACKEND, VENV_BIN, WORKER_OPTIONS, Processes, free_port, web_command
from testkit.waiting import wait_until


class Stack:
    """One run's stack (args: the command line) and the data seeded into it."""

    def __init__(self, args):
        self.args = args
        self.p = dict(PROFILES["quick" if args.quick else "full"])
        for item in args.set or []:
            key, _, value = item.partition("=")
            if key not in self.p:
                raise SystemExit(f"--set: unknown parameter {key} (one of {', '.join(self.p)})")
            self.p[key] = type(self.p[key])(value)
        self.data = Path(args.data).resolve()
        self.logs = self.data / "logs"
        self.procs = Processes(self.logs)
        self.stack_started: list[str] = []
        self.env: dict[str, str] = {}
        self.port = 0
        self.url = ""
        self.redis = None
        self.pg = None
        self.celery = None
        self.users: list[dict] = []
        self.post_ids: list[int] = []
        self.cpu_pids: dict[str, int] = {}
        self.loads: list[tuple[float, tuple]] = []
        self._stop_sampler = threading.Event()
        self.run_id = uuid.uuid4().hex[:6]

    # -- processes --

    def spawn(self, name: str, argv: list[str], cwd: Path = BACKEND,
              extra_env: dict | None = None) -> subprocess.Popen:
        return self.procs.spawn(name, argv, {**self.env, **(extra_env or {})}, cwd)

    def stop(self, *names: str, timeout: float = 15.0) -> None:
        self.procs.stop(*names, timeout=timeout)

    def check_alive(self) -> None:
        dead = self.procs.exited()
        if dead:
            name, status, tail = dead
            raise BenchError(f"{name} exited ({status}); last lines of "
                             f"{self.procs.log_of(name)}:\n{tail}")

    def localstack(self, *args: str) -> dict[str, str]:
        try:
            return localstack(*args)
        except LocalstackError as e:
            raise BenchError(str(e)) from None

    # -- set-up --

    def setup(self) -> None:
        if os.geteuid() != 0:
            raise BenchError("run as root: the private PostgreSQL runs as the postgres user "
                             "(like ./start.sh)")
        if not shutil.which("wrk"):
            log("wrk is missing: installing the Debian package")
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, timeout=600,
                           stdin=subprocess.DEVNULL)
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for f in self.logs.glob("*.log"):
            f.unlink()
        log(f"starting PostgreSQL and Redis under {self.data}")
        stack = self.localstack("start", str(self.data))
        self.stack_started = stack.get("LOCALSTACK_STARTED", "").split()
        db = self.localstack("resetdb", str(self.data), DB_NAME)
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(VENV_BIN.parent),
            "DATABASE_URL": db["DATABASE_URL"],
            "REDIS_URL": stack["REDIS_URL"],
            "SECRET_KEY": secrets.token_hex(32),
            "SYNSPIRIT_ENV": "production",
            # Seeding registers hundreds of users; password hashing is not what is measured.
            "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192", "ARGON2_PARALLELISM": "1",
            # Hundreds of users registered from one address, each writing as fast as the load
            # goes: the limits' cost (one Redis INCR per write) is measured, not their refusals.
            "REGISTER_RATE_LIMIT": "1000000 per minute", "WRITE_RATE_LIMIT": "1000000 per minute",
            # `views` measures counting every read (wrk reads from one address, which the
            # production window would count once per post); BENCH_ARGS="--env
            # VIEW_DEDUP_SECONDS=600" measures the window's own cost (docs/performance.md).
            "VIEW_DEDUP_SECONDS": "0",
            "PYTHONUNBUFFERED": "1",
        }
        for item in self.args.env or []:  # tuning experiments: DB_POOL_SIZE=30, ...
            key, _, value = item.partition("=")
            self.env[key] = value
        import psycopg2
        import redis

        # As the admin user: the application's may not FLUSHALL or INFO (localstack.sh).
        self.redis = redis.Redis.from_url(stack.get("REDIS_ADMIN_URL") or self.env["REDIS_URL"])
        self.redis.flushall()  # the bench's own Redis: start from nothing
        self.pg = psycopg2.connect(self.env["DATABASE_URL"].replace("+psycopg2", ""))
        self.pg.autocommit = True
        log("applying migrations")
        done = subprocess.run([str(VENV_BIN / "flask"), "--app", "app", "db", "upgrade"],
                              cwd=BACKEND, env=self.env, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise BenchError(f"migrations failed:\n{done.stderr[-3000:]}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        celery = str(VENV_BIN / "celery")
        # As production runs it (app/gunicorn_config.py), with room for ws_hold's websockets.
        self.spawn("web", web_command(self.port),
                   extra_env={"SYNSPIRIT_WEB_WORKER_CONNECTIONS": str(WORKER_CONNECTIONS)})
        self.io_node = f"io-bench-{self.run_id}@{socket.gethostname()}"
        self.spawn("io", [celery, "-A", "app.celery_utils", "worker", "--pool=gevent", "-c",
                          "1000", "-O", "fair", "--prefetch-multiplier=1", "-Q", "io", "-n",
                          self.io_node, *WORKER_OPTIONS, "--loglevel=WARNING"])
        self.spawn("cpu", [celery, "-A", "app.celery_utils", "worker", "--pool=prefork", "-c",
                           str(os.cpu_count() or 2), "-Q", "cpu", "-n",
                           f"cpu-bench-{self.run_id}@{socket.gethostname()}",
                           *WORKER_OPTIONS, "--loglevel=WARNING"])
        self.spawn("beat", [celery, "-A", "app.celery_utils", "beat", "--loglevel=WARNING"])
        from app.celery_config import settings as celery_settings
        from celery import Celery

        self.celery = Celery("bench-client")
        self.celery.config_from_object(celery_settings({"REDIS_URL": self.env["REDIS_URL"]}))
        self.wait_http("/readyz", 120)
        self.wait_worker(self.io_node, 120)
        self.web_pid = self.worker_pid("web")
        self.cpu_pids = {"web": self.web_pid, "io": self.worker_pid("io")}
        with contextlib.suppress(Exception):
            self.cpu_pids["redis"] = int(self.redis.info("server")["process_id"])
            backend = int(self.sql("SELECT pg_backend_pid()"))
            self.cpu_pids["postmaster"] = int(
                Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        log(f"stack up: {self.url} (gunicorn worker pid {self.web_pid})")

    def wait_answer(self, answers, what: str, timeout: float) -> None:
        """Until answers() is true, while everything started still runs."""
        def probe():
            self.check_alive()
            return answers()

        if not wait_until(probe, timeout, 0.3):
            raise BenchError(f"{what} did not answer within {timeout} s")

    def wait_http(self, path: str, timeout: float) -> None:
        import requests

        def ok() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(self.url + path, timeout=2).status_code == 200
            return False

        self.wait_answer(ok, path, timeout)

    def wait_worker(self, node: str, timeout: float) -> None:
        def pong() -> bool:
            with contextlib.suppress(Exception):
                return bool(self.celery.control.ping(destination=[node], timeout=1))
            return False

        self.wait_answer(pong, f"celery worker {node}", timeout)

    def worker_pid(self, name: str) -> int:
        """The process doing the work: gunicorn's (only) worker; a gevent-pool celery worker
        is itself (setpriv execs in place, so the Popen pid is the program's)."""
        master = self.procs.proc(name).pid
        if name != "web":
            return master
        kids = wait_until(lambda: children(master), 30, 0.2)
        if not kids:
            raise BenchError(f"no worker process under {name} ({master})")
        return kids[0]

    def teardown(self) -> None:
        self._stop_sampler.set()
        self.procs.stop(timeout=15)
        with contextlib.suppress(Exception):
            if self.pg is not None:
                self.pg.close()
        for what in self.stack_started:
            with contextlib.suppress(Exception):
                self.localstack("stop", str(self.data), what)
        self.stack_started = []

    # -- load average --

    def start_sampler(self) -> None:
        def sample():
            while not self._stop_sampler.is_set():
                self.loads.append((time.time(), os.getloadavg()))
                self._stop_sampler.wait(5)

        threading.Thread(target=sample, daemon=True).start()

    # -- seeding through the API --

    def seed(self) -> None:
        import requests

        n_users, n_posts = self.p["users"], self.p["posts"]
        log(f"seeding {n_users} users and {n_posts} posts through the API")
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=16)
        session.mount("http://", adapter)

        def register(i):
            r = session.post(self.url + "/api/auth/register", timeout=30,
                             json={"username": f"b{self.run_id}_{i}",
                                   "password": "bench-password"})
            r.raise_for_status()
            body = r.json()
            return {"id": body["user"]["id"], "token": body["token"]}

        def post(i):
            tok = self.users[i % len(self.users)]["token"]
            r = session.post(self.url + "/api/posts", timeout=30,
                             headers={"Authorization": f"Bearer {tok}"},
                             json={"title": f"Bench post {i}",
                                   "content": f"Post number {i} of the benchmark. " * 8})
            r.raise_for_status()
            return r.json()["id"]

        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as ex:
            self.users = list(ex.map(register, range(n_users)))
            self.post_ids = list(ex.map(post, range(n_posts)))
        log(f"seeded in {time.monotonic() - t0:.1f} s")
        self.settle_tasks(30)

    def settle_tasks(self, timeout: float) -> None:
        """Until no task is queued or unacknowledged (at most `timeout` seconds)."""
        wait_until(lambda: self.redis.llen("io") == 0 and self.redis.llen("cpu") == 0
                   and self.redis.hlen("unacked") == 0, timeout, 0.1)

    # -- reading it back --

    def cpu_seconds(self) -> dict:
        """CPU seconds used so far by the web worker and by the whole stack (web + io worker
        + Redis + PostgreSQL with its exited backends): CPU per request does not depend on how
        busy the rest of the machine is, requests per second do."""
        if not self.cpu_pids:
            return {}
        web = proc_cpu(self.cpu_pids["web"])
        stack = web + sum(proc_cpu(pid) for key, pid in self.cpu_pids.items()
                          if key not in ("web", "postmaster"))
        pm = self.cpu_pids.get("postmaster")
        if pm:
            stack += proc_cpu(pm, reaped=True)
            for kid in children(pm):
                stack += proc_cpu(kid)
        return {"web": web, "stack": stack}

    def metric(self, name: str, **labels) -> float:
        import requests

        text = requests.get(self.url + "/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            m = re.match(r"^(\w+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def post_views_served(self) -> int:
        return int(self.metric("synspirit_http_requests_total", method="GET",
                               endpoint="/api/posts/<int:item_id>", status="200"))

    def sql(self, query: str, *params):
        with self.pg.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()[0]

    def settle_views(self, timeout: float = 20.0) -> bool:
        """Wait until no view is buffered in Redis and no flush is running."""
        def settled() -> bool:
            buffered = sum(self.redis.hlen(f"synspirit:views:{k}") for k in ("post", "article"))
            return buffered == 0 and self.redis.llen("synspirit:views:batches") == 0 \
                and not self.redis.exists("synspirit:views:flush-lock")

        time.sleep(0.5)
        return bool(wait_until(settled, timeout, 0.1))

    def db_views(self) -> int:
        return int(self.sql("SELECT COALESCE(sum(views_count), 0) FROM posts"))

    def view_batches(self) -> int:
        return int(self.sql("SELECT count(*) FROM view_batches"))

    # -- --serve --

    def serve(self, secs: float) -> None:
        self.setup()
        self.seed()
        (self.data / "serve.env").write_text(
            "".join(f"export {k}={shlex.quote(self.env[k])}\n" for k in
                    ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")) +
            f"export BENCH_URL={self.url}\nexport BENCH_WEB_PID={self.web_pid}\n"
            f"export BENCH_IO_PID={self.worker_pid('io')}\n"
            f"export BENCH_POST_IDS='{self.post_ids[0]}-{self.post_ids[-1]}'\n"
            f"export BENCH_TOKEN={self.users[0]['token']}\n")
        log(f"serving {self.url} for {secs:.0f} s; environment in {self.data / 'serve.env'}")
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            self.check_alive()
            time.sleep(1)
