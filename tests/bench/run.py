#!/usr/bin/env python3
"""`make bench`: SynSpirit measured against its own floor, on one machine, over loopback.

    .venv/bin/python tests/bench/run.py [--quick] [--out FILE] [--data DIR] [--profile]
                                        [--only SCENARIO,...]
    LAB_ID=N .venv/bin/python tests/bench/run.py --lab

Starts its own stack (as root, like ./start.sh): private PostgreSQL and Redis under
.data/bench (backend/scripts/localstack.sh), a fresh database `synspirit_bench`, the migrations,
ONE gunicorn web instance as production runs it (app/gunicorn_config.py: app.gunicorn_worker.Worker,
12000 worker connections for the websocket scenario), the io worker (gevent
-c 1000), the cpu worker (prefork) and beat. Seeds users and posts through the HTTP API, runs
each scenario for a bounded time and count, stops everything it started (also on Ctrl-C,
SIGTERM or failure), prints a table and writes the same figures as JSON
(.data/bench/results.json unless --out). Traffic goes to 127.0.0.1 only.

Every throughput figure comes with a floor measured in the same run, as a ratio, because
absolute numbers drift with the machine and its load (docs/performance.md explains each):

  post_get        GET /api/posts/<id> (one hot post) req/s      / healthz req/s   target >= 0.6
  views           GET /api/posts/<id> over many posts (views)    / healthz req/s   target >= 0.8
                  + views in PostgreSQL == 200 responses served (exact) and view batches
                  (one INSERT + one UPDATE each) per 1,000 views                    target <= 10
  likes           POST /api/actions (like), many users x many posts: req/s, counts exact and
                  the time until every post's likes_count equals its rows     target <= 2 s
  io_drain        app.tasks.update_post_counts drained per second by the io worker
                  / a no-op task drained by the same pool and flags (bench_noop.py)
  ws_hold         Socket.IO websocket connections open at once on the one instance
                  (target >= 10,000) and RSS growth per 1,000 (target <= 60 MiB)
  fanout          a `counts` event (caused by a like over HTTP) delivered to 1,000
                  subscribers: p99 from the HTTP call to the event             target < 1 s
  latency         p50/p99 of GET /api/posts/<id> at 70% of the saturating rate (the `views`
                  rate), open-loop-ish: exponential think times in wrk's delay() hook,
                  p99 target < 100 ms
  lab             through nginx vs straight and `make lab` timings: read from
                  .cache/lab/timings.json when present, else "not measured"

--quick: a few seconds per scenario and small counts (the backend suite's smoke run).
--profile: also records the web worker (and the io worker during io_drain) with py-spy
  (--nonblocking, 100 Hz) and writes collapsed stacks plus a top-frames summary to
  DATA/profiles/ (perturbs the figures a little; use it to explain a miss).
--lab: instead of all this, against the running lab LAB_ID: GET /api/posts/<id> through
  nginx vs straight to the same web instances, wrk on lb1 both ways (ratio), recorded in the
  lab's timings.json (--lab-timings FILE) where the table's lab row reads it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from testkit import lab  # noqa: E402
from testkit.localstack import LocalstackError, localstack  # noqa: E402
from testkit.processes import BACKEND, VENV_BIN, WORKER_OPTIONS, Processes, free_port, web_command  # noqa: E402

BENCH = ROOT / "tests" / "bench"
DB_NAME = "synspirit_bench"
WORKER_CONNECTIONS = 12000  # above the 10,000 websockets of ws_hold
LAB_TIMINGS = lab.STATE / "timings.json"

PROFILES = {
    "full": dict(users=200, posts=2000, http_secs=5, rounds=2, warm_secs=2, wrk_conns=64,
                 like_secs=10, lat_secs=15, drain_secs=10, ws_conns=10000, ws_hold=10,
                 fan_subs=1000, fan_rounds=10),
    "quick": dict(users=12, posts=40, http_secs=1, rounds=1, warm_secs=0.5, wrk_conns=16,
                  like_secs=2, lat_secs=2, drain_secs=2, ws_conns=100, ws_hold=1,
                  fan_subs=20, fan_rounds=3),
}
SCENARIOS = ("post_get", "views", "likes", "latency", "io_drain", "ws_hold", "fanout")

# Figures every results.json carries (the smoke test checks them).
FIGURES = ("healthz_rps", "post_get", "views", "likes", "io_drain", "ws_hold", "fanout",
           "latency", "lab")


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class BenchError(RuntimeError):
    pass


# --- helpers ------------------------------------------------------------------------------------

def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (max(hard, 65536), hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise BenchError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def proc_cpu(pid: int, reaped: bool = False) -> float:
    """utime + stime (+ the waited-for children's, when reaped) of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ratio(a, b):
    return None if a is None or not b else round(a / b, 3)


# wrk: every script ends with this done() hook, which prints one machine-readable line.
LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "non_2xx": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""
LUA_SEED = r"""
function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000) + %d)
end
"""


def combine(runs: list[dict]) -> dict:
    """Several wrk runs of one kind as one: totals, median p50, worst p99/max."""
    req = sum(r["requests"] for r in runs)
    secs = sum(r["seconds"] for r in runs)
    p50s = sorted(r["p50_ms"] for r in runs)
    out = {"requests": req, "seconds": round(secs, 3), "rps": round(req / secs, 1),
           "cpu_ms_per_req": {k: round(1000.0 * sum(r["cpu_s"][k] for r in runs) / req, 3)
                              if req else None for k in runs[0].get("cpu_s", {})},
           "rounds_rps": [r["rps"] for r in runs], "p50_ms": p50s[len(p50s) // 2],
           "p99_ms": max(r["p99_ms"] for r in runs), "max_ms": max(r["max_ms"] for r in runs),
           "command": runs[0]["command"], "load1": [round(r["load1"], 2) for r in runs]}
    for k in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts"):
        out[k] = sum(r[k] for r in runs)
    return out


def lua_list(values) -> str:
    return "{" + ",".join(json.dumps(v) if isinstance(v, str) else str(v) for v in values) + "}"


# --- the bench ----------------------------------------------------------------------------------

class Bench:
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
        self.results: dict = {}
        self.healthz_runs: list[dict] = []
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
            "PYTHONUNBUFFERED": "1",
        }
        for item in self.args.env or []:  # tuning experiments: DB_POOL_SIZE=30, ...
            key, _, value = item.partition("=")
            self.env[key] = value
        import psycopg2
        import redis

        self.redis = redis.Redis.from_url(self.env["REDIS_URL"])
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

    def wait_http(self, path: str, timeout: float) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"{path} did not answer within {timeout} s")
            time.sleep(0.3)

    def wait_worker(self, node: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(Exception):
                if self.celery.control.ping(destination=[node], timeout=1):
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"celery worker {node} did not answer within {timeout} s")
            time.sleep(0.3)

    def worker_pid(self, name: str) -> int:
        """The process doing the work: gunicorn's (only) worker; a gevent-pool celery worker
        is itself (setpriv execs in place, so the Popen pid is the program's)."""
        master = self.procs.proc(name).pid
        if name != "web":
            return master
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            kids = children(master)
            if kids:
                return kids[0]
            time.sleep(0.2)
        raise BenchError(f"no worker process under {name} ({master})")

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.redis.llen("io") == 0 and self.redis.llen("cpu") == 0 \
                    and self.redis.hlen("unacked") == 0:
                return
            time.sleep(0.1)

    # -- wrk --

    def wrk(self, name: str, script: str, path: str, secs: float, conns: int) -> dict:
        lua = self.data / f"{name}.lua"
        lua.write_text(script + LUA_DONE)
        cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{max(1, round(secs))}s",
               "--timeout", "10s", "-s", str(lua), self.url + path]
        cpu0 = self.cpu_seconds()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60,
                              stdin=subprocess.DEVNULL)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({done.returncode}): {done.stdout[-1500:]}"
                             f"{done.stderr[-1500:]}")
        r = json.loads(line[len("BENCHJSON "):])
        r["seconds"] = r["duration_us"] / 1e6
        r["rps"] = round(r["requests"] / r["seconds"], 1)
        for k in ("p50", "p90", "p99", "max"):
            r[f"{k}_ms"] = round(r.pop(f"{k}_us") / 1000.0, 2)
        r["command"] = shlex.join(cmd)
        r["load1"] = os.getloadavg()[0]
        if cpu0:
            cpu1 = self.cpu_seconds()
            r["cpu_s"] = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0}
        self.check_alive()
        return r

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

    def lua_many_posts(self, seed: int) -> str:
        return (f"local ids = {lua_list(self.post_ids)}\nlocal n = #ids\n" + LUA_SEED % seed +
                'function request()\n  return wrk.format("GET", "/api/posts/" .. '
                'ids[math.random(n)])\nend\n')

    def profiled(self, name: str, secs: float, pid: int | None = None):
        """py-spy record of the web worker (or pid) for secs, when --profile."""
        if not self.args.profile:
            return None
        pyspy = VENV_BIN / "py-spy"
        prof_dir = self.data / "profiles"
        prof_dir.mkdir(parents=True, exist_ok=True)
        out = prof_dir / f"{name}.collapsed"
        return (subprocess.Popen(
            [str(pyspy), "record", "--pid", str(pid or self.web_pid), "--duration",
             str(max(1, int(secs))), "--rate", "100", "--nonblocking", "--format", "raw",
             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)

    def finish_profile(self, handle) -> str | None:
        if handle is None:
            return None
        proc, out = handle
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        if proc.poll() is None:
            proc.kill()
        if not out.exists():
            return None
        summary = summarize_profile(out)
        out.with_suffix(".top.txt").write_text(summary)
        return str(out.with_suffix(".top.txt"))

    # -- metrics and counts --

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
        time.sleep(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buffered = sum(self.redis.hlen(f"synspirit:views:{k}") for k in ("post", "article"))
            if buffered == 0 and self.redis.llen("synspirit:views:batches") == 0 \
                    and not self.redis.exists("synspirit:views:flush-lock"):
                return True
            time.sleep(0.1)
        return False

    def db_views(self) -> int:
        return int(self.sql("SELECT COALESCE(sum(views_count), 0) FROM posts"))

    def view_batches(self) -> int:
        return int(self.sql("SELECT count(*) FROM view_batches"))

    # -- scenarios --

    def paired(self, name: str, script: str, path: str, secs: float,
               after_last=None) -> dict:
        """`rounds` x [healthz, figure], then healthz once more, each for `secs`: the figure
        and its floor share the machine's weather. Rates from totals; latency percentiles:
        median of the rounds' p50, worst of their p99."""
        conns, rounds = self.p["wrk_conns"], self.p["rounds"]
        self.warm(script, path)
        hs, xs = [], []
        prof = None
        for i in range(rounds):
            hs.append(self.wrk(f"healthz_{name}_{i}", "", "/healthz", secs, conns))
            if i == 0:
                prof = self.profiled(name, secs)
            xs.append(self.wrk(f"{name}_{i}", script, path, secs, conns))
            if i == 0:
                profile = self.finish_profile(prof)
        after = after_last() if after_last else None  # right after the last figure round
        hs.append(self.wrk(f"healthz_{name}_{rounds}", "", "/healthz", secs, conns))
        self.healthz_runs += hs
        r, floor = combine(xs), combine(hs)
        cpu_x, cpu_h = r.get("cpu_ms_per_req") or {}, floor.get("cpu_ms_per_req") or {}
        r.update({"floor_cpu_ms_per_req": cpu_h,
                  # what the ratio would be with the CPU to itself: floor CPU / figure CPU
                  "cpu_ratio": {k: ratio(cpu_h.get(k), cpu_x[k]) for k in cpu_x if cpu_x[k]}})
        r.update({"floor_rps": floor["rps"], "ratio": ratio(r["rps"], floor["rps"]),
                  "floor_rounds_rps": [h["rps"] for h in hs], "profile": profile,
                  "floor_command": hs[0]["command"]})
        if after:
            r.update(after)
        log(f"{name}: {r['rps']} req/s vs healthz {floor['rps']} req/s "
            f"(rounds {r['rounds_rps']} / {r['floor_rounds_rps']}) -> {r['ratio']}; CPU ms per "
            f"request {cpu_x} vs {cpu_h} -> CPU ratio {r['cpu_ratio']}")
        return r

    def warm(self, script: str, path: str) -> None:
        self.wrk("warm", script, path, self.p["warm_secs"], self.p["wrk_conns"])

    def wait_served_stable(self, fn, timeout: float = 60.0):
        """Until the server has answered every request still in flight when wrk stopped."""
        last, since = fn(), time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = fn()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= 1.0:
                break
        return last

    def run_post_get(self) -> dict:
        pid = self.post_ids[0]
        return self.paired("post_get", "", f"/api/posts/{pid}", self.p["http_secs"])

    def run_views(self) -> dict:
        script = self.lua_many_posts(1)
        # Every post read once first (each instance keeps a post's body for ITEM_CACHE_TTL,
        # 60 s), so that `views` is the steady state of a warm instance; this first pass is
        # reported as `views.cold` (a PostgreSQL read per post), bounded to 60 s.
        cold_script = (f"local ids = {lua_list(self.post_ids)}\nlocal n = #ids\n"
                       "local i = 0\nlocal answered = 0\n"
                       "function request()\n  i = i + 1\n  if i > n then i = 1 end\n"
                       '  return wrk.format("GET", "/api/posts/" .. ids[i])\nend\n'
                       "function response(status, headers, body)\n"
                       "  answered = answered + 1\n"
                       "  if answered >= n then wrk.thread:stop() end\nend\n")
        # wrk's thread:stop() may not end the pass early, so its length is bounded by the
        # number of posts too (2 s for --quick's 40, 10 s for 2,000; a quiet machine reads
        # 2,000 cold posts in ~2 s). Not longer: every body cached in this pass expires
        # ITEM_CACHE_TTL (60 s) after it, all at once, and a 60 s pass put that burst of
        # reloads inside the measured rounds (5 % of the web worker's samples, views 0.69-0.80
        # between runs). In the steady state each post reloads once per TTL, spread out:
        # 2,000 posts / 60 s = 33 loads/s of ~1 ms, about 1 % of reads at 3,000 views/s.
        cold_secs = min(60.0, max(2.0, len(self.post_ids) / 200.0))
        cold = self.wrk("views_cold", cold_script, "/", cold_secs, self.p["wrk_conns"])
        log(f"views, first read of each post (cold): {cold['requests']} requests, "
            f"CPU seconds {cold.get('cpu_s')}")
        self.warm(script, "/")
        self.wait_served_stable(self.post_views_served)
        self.settle_views()
        served0, db0, batches0 = self.post_views_served(), self.db_views(), self.view_batches()
        r = self.paired("views", script, "/", self.p["http_secs"])
        r["cold"] = {k: cold.get(k) for k in ("rps", "requests", "seconds", "p50_ms", "p99_ms",
                                              "cpu_s", "command")}
        if cold.get("cpu_s") and cold["requests"]:
            r["cold"]["cpu_ms_per_req"] = {k: round(1000.0 * v / cold["requests"], 3)
                                           for k, v in cold["cpu_s"].items()}
        self.wait_served_stable(self.post_views_served)
        settled = self.settle_views()
        served = self.post_views_served() - served0
        in_db = self.db_views() - db0
        batches = self.view_batches() - batches0
        r.update({
            "views_served": served, "views_in_db": in_db, "exact": settled and served == in_db,
            "client_requests": r["requests"], "view_batches": batches,
            # each batch is one transaction: INSERT INTO view_batches + one UPDATE of all ids
            "db_writes_per_1000_views": round(batches * 1000.0 / served, 3) if served else None,
            "update_statements": batches,
        })
        log(f"views over {len(self.post_ids)} posts: {served} served, {in_db} in PostgreSQL, "
            f"{batches} batches")
        return r

    def run_likes(self) -> dict:
        tokens = [u["token"] for u in self.users]
        script = (f"local tokens = {lua_list(tokens)}\nlocal ids = {lua_list(self.post_ids)}\n"
                  + LUA_SEED % 2 +
                  "function request()\n"
                  "  local body = '{\"action\": \"like\", \"target_type\": \"post\", "
                  "\"target_id\": ' .. ids[math.random(#ids)] .. '}'\n"
                  "  return wrk.format(\"POST\", \"/api/actions\", {[\"Authorization\"] = "
                  "\"Bearer \" .. tokens[math.random(#tokens)], [\"Content-Type\"] = "
                  "\"application/json\"}, body)\nend\n")
        mismatch_sql = """
            SELECT count(*) FROM posts p WHERE p.likes_count <>
              (SELECT count(*) FROM reactions r WHERE r.post_id = p.id AND r.action = 'like')"""

        def converge() -> dict:
            # from the moment wrk stopped (requests still in flight on the server included)
            t_end = time.monotonic()
            converged, mismatched = None, None
            while time.monotonic() < t_end + 60:
                mismatched = int(self.sql(mismatch_sql))
                if mismatched == 0:
                    converged = round(time.monotonic() - t_end, 2)
                    break
                time.sleep(0.1)
            return {"converged_s": converged, "posts_mismatched": mismatched}

        r = self.paired("likes", script, "/", self.p["like_secs"] / self.p["rounds"],
                        after_last=converge)
        rows = int(self.sql("SELECT count(*) FROM reactions WHERE action = 'like' "
                            "AND post_id IS NOT NULL"))
        cached = int(self.sql("SELECT COALESCE(sum(likes_count), 0) FROM posts"))
        still = int(self.sql(mismatch_sql))
        r.update({"likes_rows": rows, "likes_counted": cached, "posts_mismatched_at_end": still,
                  "exact": r["posts_mismatched"] == 0 and still == 0 and rows == cached,
                  "note": "converged_s: from the end of the last likes round until every "
                          "post's likes_count equals its rows"})
        log(f"likes: {rows} likes stored, converged {r['converged_s']} s after the load")
        return r

    def run_latency(self, sat_rps: float) -> dict:
        target = 0.7 * sat_rps
        conns = self.p["wrk_conns"]
        mean_ms = conns * 1000.0 / target
        # Exponential think time per connection: the connections together approximate a
        # Poisson arrival stream at `target` req/s (as long as latency << mean_ms).
        script = (self.lua_many_posts(3) +
                  f"local mean_ms = {mean_ms:.3f}\n"
                  "function delay()\n  return math.floor(-math.log(1 - math.random()) * "
                  "mean_ms)\nend\n")
        r = self.wrk("latency", script, "/", self.p["lat_secs"], conns)
        r.update({"saturating_rps": sat_rps, "target_rps": round(target, 1),
                  "achieved_fraction": ratio(r["rps"], sat_rps), "mean_think_ms": mean_ms})
        log(f"latency at {r['rps']} req/s ({r['achieved_fraction']} of {sat_rps}): "
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
        return r

    def _drain(self, task: str, queue: str, node: str, n: int, args_of) -> dict:
        ctl = self.celery.control
        if not ctl.cancel_consumer(queue, destination=[node], reply=True, timeout=5):
            raise BenchError(f"{node} did not cancel its {queue} consumer")
        time.sleep(0.5)
        t_send = time.monotonic()
        prefix = f"bench-{uuid.uuid4().hex[:8]}-"
        with self.celery.producer_or_acquire() as producer:
            for i in range(n):
                self.celery.send_task(task, args=args_of(i), queue=queue, producer=producer,
                                      task_id=f"{prefix}{i}")
        send_s = time.monotonic() - t_send
        queued = self.redis.llen(queue)
        t0 = time.monotonic()
        ctl.add_consumer(queue, destination=[node], reply=True, timeout=5)
        deadline = t0 + max(30.0, 6 * self.p["drain_secs"])
        left = None
        t_first = None
        while time.monotonic() < deadline:
            if t_first is None and self.redis.llen(queue) < queued:
                t_first = time.monotonic()  # the consumer is back (add_consumer takes a while)
            # Queued messages are ours (the consumer was cancelled while they were sent) plus
            # the odd periodic task; reserved-but-unacked ones are matched by task id.
            waiting = self.redis.llen(queue)
            if waiting:
                time.sleep(0.005)
                continue
            left = sum(1 for v in self.redis.hvals("unacked")
                       if f'"{prefix}' in v.decode(errors="replace"))
            if left == 0:
                break
            time.sleep(0.005)
        t_end = time.monotonic()
        secs = t_end - (t_first or t0)
        done = n - (left or 0)
        if left:  # bounded: give up on the rest (counter tasks are idempotent)
            self.redis.delete(queue)
            log(f"{queue}: {left} of {n} tasks left after {secs:.0f} s; dropped")
        return {"tasks": n, "done": done, "queued_at_start": queued, "seconds": round(secs, 3),
                "resume_s": round((t_first or t_end) - t0, 3),
                "per_s": round(done / secs, 1), "enqueue_s": round(send_s, 2),
                "timed_out": bool(left)}

    def drain(self, task: str, queue: str, node: str, args_of) -> dict:
        """A probe of 100 tasks sizes the real batch to about drain_secs of work."""
        probe = self._drain(task, queue, node, 200, args_of)
        n = int(min(20000, max(100, probe["per_s"] * self.p["drain_secs"])))
        r = self._drain(task, queue, node, n, args_of)
        r["probe_per_s"] = probe["per_s"]
        return r

    def run_io_drain(self) -> dict:
        ids = self.post_ids
        self.settle_tasks(30)
        counter = self.drain("app.tasks.update_post_counts", "io", self.io_node,
                             lambda i: [ids[i % len(ids)]])
        log(f"io drain: update_post_counts {counter['per_s']}/s ({counter['tasks']} tasks)")
        if self.args.profile:  # a third batch, profiled (the figures above are not)
            n = int(counter["per_s"] * self.p["drain_secs"])
            prof = self.profiled("io_drain", self.p["drain_secs"], pid=self.worker_pid("io"))
            self._drain("app.tasks.update_post_counts", "io", self.io_node, max(100, n),
                        lambda i: [ids[i % len(ids)]])
            counter["profile"] = self.finish_profile(prof)
        node = f"noop-bench-{self.run_id}@{socket.gethostname()}"
        self.spawn("noop", [str(VENV_BIN / "celery"), "-A", "bench_noop", "worker",
                            "--pool=gevent", "-c", "1000", "-O", "fair",
                            "--prefetch-multiplier=1", "-Q", "bench-noop", "-n", node,
                            "--loglevel=WARNING"], cwd=BENCH)
        try:
            self.wait_worker(node, 120)
            noop = self.drain("bench.noop", "bench-noop", node, lambda i: [i])
        finally:
            self.stop("noop")
        log(f"io drain: no-op {noop['per_s']}/s ({noop['tasks']} tasks)")
        return {"counter": counter, "noop": noop, "counter_per_s": counter["per_s"],
                "noop_per_s": noop["per_s"], "ratio": ratio(counter["per_s"], noop["per_s"])}

    def sio(self, mode: str, *extra: str, timeout: float):
        cmd = [sys.executable, str(BENCH / "sio_load.py"), mode, "--url", self.url, *extra]
        logf = self.logs / f"sio_{mode}.log"
        errf = open(logf, "ab")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True,
                                env=self.env, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.running[f"sio_{mode}"] = (proc, logf)
        deadline = time.monotonic() + timeout

        def lines():
            try:
                for line in proc.stdout:
                    if time.monotonic() > deadline:
                        break
                    with contextlib.suppress(ValueError):
                        yield json.loads(line)
            finally:
                errf.close()
        return proc, lines(), cmd

    def run_ws_hold(self) -> dict:
        n, hold = self.p["ws_conns"], self.p["ws_hold"]
        time.sleep(1)
        base = rss_mib(self.web_pid)
        proc, events, cmd = self.sio("hold", "--n", str(n), "--hold", str(hold),
                                     "--concurrency", "200", "--open-timeout", "400",
                                     timeout=600)
        timer = threading.Timer(600, lambda: proc.kill())
        timer.start()
        result: dict = {"wanted": n, "rss_base_mib": round(base, 1), "command": shlex.join(cmd)}
        try:
            for ev in events:
                if ev.get("event") == "open":
                    result.update(opened=ev["opened"], failed=ev["failed"],
                                  open_seconds=ev["seconds"], errors=ev["errors"])
                    time.sleep(min(1.0, hold / 2))
                    peak = rss_mib(self.web_pid)
                    result["rss_peak_mib"] = round(peak, 1)
                    result["server_gauge"] = int(self.metric("synspirit_socketio_connections"))
                    result["load1"] = os.getloadavg()[0]
                    if ev["opened"]:
                        result["rss_mib_per_1000"] = round((peak - base) * 1000 / ev["opened"], 1)
                elif ev.get("event") == "done":
                    result["alive_after_hold"] = ev["alive_after_hold"]
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        finally:
            timer.cancel()
            self.stop("sio_hold")
        time.sleep(2)
        result["rss_after_close_mib"] = round(rss_mib(self.web_pid), 1)
        log(f"websockets: {result.get('opened')} open at once, "
            f"{result.get('rss_mib_per_1000')} MiB RSS per 1,000")
        return result

    def run_fanout(self) -> dict:
        import requests

        author = self.users[0]
        r = requests.post(self.url + "/api/posts", timeout=30,
                          headers={"Authorization": f"Bearer {author['token']}"},
                          json={"title": "fan-out target", "content": "watched by many"})
        r.raise_for_status()
        target = r.json()["id"]
        rounds = min(self.p["fan_rounds"], len(self.users) - 1)
        tokfile = self.data / "fanout_tokens.txt"
        tokfile.write_text("\n".join(u["token"] for u in self.users[1:rounds + 1]) + "\n")
        self.settle_tasks(30)
        proc, events, cmd = self.sio("fanout", "--n", str(self.p["fan_subs"]), "--target-id",
                                     str(target), "--tokens", str(tokfile), "--rounds",
                                     str(rounds), "--concurrency", "200", timeout=300)
        timer = threading.Timer(300, lambda: proc.kill())
        timer.start()
        result: dict = {"command": shlex.join(cmd), "load1": os.getloadavg()[0]}
        try:
            for ev in events:
                if ev.get("event") == "fanout":
                    result.update({k: v for k, v in ev.items() if k != "event"})
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        finally:
            timer.cancel()
            self.stop("sio_fanout")
        for k in ("p50", "p90", "p99", "max"):
            if result.get(k) is not None:
                result[f"{k}_ms"] = round(result.pop(k) * 1000, 1)
        log(f"fan-out to {result.get('subscribed')}: p50 {result.get('p50_ms')} ms, "
            f"p99 {result.get('p99_ms')} ms, missing {result.get('missing')}")
        return result

    # -- everything --

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

    def run(self) -> dict:
        only = set(self.args.only.split(",")) if self.args.only else set(SCENARIOS)
        unknown = only - set(SCENARIOS)
        if unknown:
            raise BenchError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        self.start_sampler()
        started = time.time()
        load_before = os.getloadavg()
        self.setup()
        self.seed()
        fig: dict = {}
        if "post_get" in only:
            fig["post_get"] = self.run_post_get()
        if "views" in only or "latency" in only:
            fig["views"] = self.run_views()
        if "likes" in only:
            fig["likes"] = self.run_likes()
        if not self.healthz_runs:
            self.healthz_runs.append(self.wrk("healthz", "", "/healthz", self.p["http_secs"],
                                              self.p["wrk_conns"]))
        h = combine(self.healthz_runs)
        fig["healthz_rps"] = {"value": h["rps"], "runs_rps": h["rounds_rps"],
                              "min": min(h["rounds_rps"]), "max": max(h["rounds_rps"]),
                              "p50_ms": h["p50_ms"], "p99_ms": h["p99_ms"],
                              "command": h["command"]}
        later = (("latency", lambda: self.run_latency(fig["views"]["rps"])),
                 ("io_drain", self.run_io_drain), ("ws_hold", self.run_ws_hold),
                 ("fanout", self.run_fanout))
        for key, fn in later:
            if key not in only:
                continue
            try:
                fig[key] = fn()
            except (BenchError, subprocess.SubprocessError, OSError, ValueError) as e:
                # one scenario failing must not lose the others' figures
                log(f"{key} failed: {type(e).__name__}: {e}")
                fig[key] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                self.check_alive()
        fig["lab"] = lab_figures()
        # overall exactness: every GET of a post served so far is in PostgreSQL
        settled = self.settle_views()
        total_served, total_db = self.post_views_served(), self.db_views()
        judge(fig)
        return {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": bool(self.args.quick),
            "machine": {
                "nproc": os.cpu_count(), "cpu_model": cpu_model(),
                "kernel": platform.release(), "python": platform.python_version(),
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
                "load1_max": round(max((s[1][0] for s in self.loads), default=0), 2),
                "load1_mean": round(sum(s[1][0] for s in self.loads) / len(self.loads), 2)
                if self.loads else None,
            },
            "config": {**self.p, "worker_connections": WORKER_CONNECTIONS,
                       "env_overrides": self.args.env or [],
                       "url": self.url, "data": str(self.data)},
            "views_total": {"served": total_served, "in_db": total_db,
                            "exact": settled and total_served == total_db},
            "figures": fig,
        }


# --- the lab: through nginx vs straight to the same instances ---------------------------------

def lab_inventory() -> dict:
    """The lab's inventory (testkit.lab.read_inventory), written by tests/lab/lab.sh."""
    if not lab.INVENTORY.exists():
        raise BenchError(f"no lab inventory {lab.INVENTORY}: bring the lab up first "
                         f"(LAB_ID={lab.LAB_ID} make lab)")
    return lab.read_inventory()


def lab_ssh(addr: str, cmd: str, timeout: float = 120, stdin: str | None = None) -> str:
    done = subprocess.run(["ssh", *lab.ssh_options(connect_timeout=5), f"root@{addr}", cmd],
                          input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"ssh {addr} {cmd!r}: rc={done.returncode} {done.stderr[-800:]}")
    return done.stdout


def lab_wrk(lb: str, targets: list[str], path: str, secs: int, conns: int) -> dict:
    """One round on lb1: one wrk per target URL at the same time, the connections and threads
    split evenly among them (one target: nginx; several: every instance straight). Summed."""
    per, threads = max(1, conns // len(targets)), max(1, 4 // len(targets))
    cmds = [f"wrk -t {threads} -c {max(per, threads)} -d {secs}s --timeout 10s "
            f"-s /root/bench-done.lua {shlex.quote(t + path)} > /root/bench-{i}.out 2>&1 &"
            for i, t in enumerate(targets)]
    script = " ".join(cmds) + " wait; cat /root/bench-*.out; rm -f /root/bench-*.out"
    out = lab_ssh(lb, script, timeout=secs + 60)
    runs = [json.loads(ln[len("BENCHJSON "):]) for ln in out.splitlines() if ln.startswith("BENCHJSON ")]
    if len(runs) != len(targets):
        raise BenchError(f"wrk on lb1: {len(runs)} results for {len(targets)} targets: {out[-1500:]}")
    secs_run = max(r["duration_us"] for r in runs) / 1e6
    req = sum(r["requests"] for r in runs)
    return {"requests": req, "seconds": round(secs_run, 3), "rps": round(req / secs_run, 1),
            "p50_ms": round(max(r["p50_us"] for r in runs) / 1000, 2),
            "p99_ms": round(max(r["p99_us"] for r in runs) / 1000, 2),
            "errors": sum(r[k] for r in runs for k in ("connect_errors", "read_errors",
                                                         "write_errors", "non_2xx", "timeouts"))}


def pin_lab_hosts(spec: dict[str, set[int]]) -> int:
    """Sets the CPU affinity of every thread of the named lab hosts (their systemd-nspawn
    process and all it started: systemd, nginx, gunicorn, sshd, ...; new processes inherit it).
    The hosts share the controller's cores; pinning lb1 to one core and the web hosts to the
    others models the production layout, where the load balancer has its own machine."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
    kids: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        kids.setdefault(pp, []).append(pid)
    prefix = "" if lab.LAB_ID == "0" else f"l{lab.LAB_ID}"
    pinned = 0
    for pid in parent:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if not argv[0].endswith(b"systemd-nspawn"):
                continue
            machine = next((a.decode().split("=", 1)[1] for a in argv if a.startswith(b"--machine=")), "")
            host = machine[len(prefix):] if machine.startswith(prefix) else ""
            if host not in spec:
                continue
            todo = [pid]
            while todo:
                p = todo.pop()
                todo += kids.get(p, [])
                with contextlib.suppress(OSError):
                    for tid in os.listdir(f"/proc/{p}/task"):
                        with contextlib.suppress(OSError):
                            os.sched_setaffinity(int(tid), spec[host])
                            pinned += 1
    return pinned


def run_lab(args) -> dict:
    """Against a running lab (`LAB_ID=N make lab`): GET /api/posts/<id> through nginx
    (https on lb1, least_conn over every web instance) vs straight to every web instance at
    once (http to each ADDRESS:PORT of nginx's upstream list), both with wrk ON lb1 (the
    firewall lets only lb1 reach the instances, and the client then costs the same both ways),
    the same total connections and threads, in interleaved rounds; also /healthz both ways.
    Writes the figures to --out and records `nginx_vs_straight` in the lab's timings.json."""
    import requests
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the lab's own CA
    p = dict(PROFILES["quick" if args.quick else "full"])
    secs, conns, rounds = max(1, round(p["http_secs"])), p["wrk_conns"], p["rounds"] + 1
    inventory = lab_inventory()
    if "lb1" not in inventory["addresses"]:
        raise BenchError("no lb1 in the lab's inventory")
    lb = inventory["addresses"]["lb1"]
    lab_ssh(lb, "command -v wrk >/dev/null || { apt-get update -qq && "
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }", timeout=300)
    lab_ssh(lb, "cat > /root/bench-done.lua", stdin=LUA_DONE)
    conf = lab_ssh(lb, "nginx -T 2>/dev/null")
    block = re.search(r"upstream synspirit_api \{(.*?)\}", conf, re.S)
    instances = sorted(set(re.findall(r"^\s*server\s+([\d.]+:\d+)", block.group(1) if block else "", re.M)))
    if not instances:
        raise BenchError("no web instance in lb1's `upstream synspirit_api`")
    s = requests.Session()
    name = f"benchlab_{uuid.uuid4().hex[:8]}"
    # verify=False on each call: a session's verify loses to REQUESTS_CA_BUNDLE in requests.
    r = s.post(f"https://{lb}/api/auth/register", timeout=30, verify=False,
               json={"username": name, "password": "bench-password"})
    r.raise_for_status()
    token = r.json()["token"]
    r = s.post(f"https://{lb}/api/posts", timeout=30, verify=False,
               headers={"Authorization": f"Bearer {token}"},
               json={"title": "Lab bench post", "content": "Through nginx or straight. " * 8})
    r.raise_for_status()
    path = f"/api/posts/{r.json()['id']}"
    load_before = os.getloadavg()
    out: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "lb": lb, "instances": instances, "path": path, "secs": secs, "conns": conns}
    ways = {"nginx": [f"https://{lb}"], "straight": [f"http://{i}" for i in instances]}
    cpus = sorted(os.sched_getaffinity(0))
    web_hosts = inventory["groups"].get("web", [])
    layouts = [("shared", None)]
    if len(cpus) >= 2:
        layouts.append(("lb_own_core", {"lb1": {cpus[0]}, **{h: set(cpus[1:]) for h in web_hosts}}))
    for layout, spec in layouts:
        try:
            if spec:
                log(f"lab: pinning lb1 to CPU {cpus[0]} and {', '.join(web_hosts)} to CPU "
                    f"{','.join(map(str, cpus[1:]))} ({pin_lab_hosts(spec)} threads)")
            out[layout] = lab_compare(lb, ways, path, secs, conns, rounds, layout)
        finally:
            if spec:
                pin_lab_hosts({h: set(cpus) for h in spec})
    out["nginx_vs_straight"] = out["shared"]["post_get"]["ratio"]
    out["nginx_vs_straight_lb_own_core"] = (out["lb_own_core"]["post_get"]["ratio"]
                                            if "lb_own_core" in out else None)
    out["machine"] = {"nproc": os.cpu_count(), "cpu_model": cpu_model(),
                      "load_before": [round(x, 2) for x in load_before],
                      "load_after": [round(x, 2) for x in os.getloadavg()]}
    out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    timings = Path(args.lab_timings) if args.lab_timings else LAB_TIMINGS
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(timings.read_text()) if timings.exists() else {}
        data["nginx_vs_straight"] = {
            "ratio": out["nginx_vs_straight"], "at": out["finished_at"],
            "ratio_lb_own_core": out["nginx_vs_straight_lb_own_core"],
            "nginx_rps": out["shared"]["post_get"]["nginx"]["rps"],
            "straight_rps": out["shared"]["post_get"]["straight"]["rps"],
            "instances": len(instances),
            "healthz_ratio": out["shared"]["healthz"]["ratio"], "command": shlex.join(sys.argv)}
        timings.write_text(json.dumps(data, indent=2) + "\n")
        out["timings"] = str(timings)
    return out


def lab_compare(lb: str, ways: dict, path: str, secs: int, conns: int, rounds: int,
                layout: str) -> dict:
    """/healthz and GET of the post, nginx and straight in interleaved rounds."""
    out: dict = {}
    for what, route in (("healthz", "/healthz"), ("post_get", path)):
        lab_wrk(lb, ways["nginx"], route, 1, conns)  # warm both ways: connections, caches
        lab_wrk(lb, ways["straight"], route, 1, conns)
        via: dict[str, list] = {"nginx": [], "straight": []}
        for _ in range(rounds):
            for key in ("nginx", "straight"):
                via[key].append(lab_wrk(lb, ways[key], route, secs, conns))
        res = {}
        for key, runs in via.items():
            req, sec = sum(x["requests"] for x in runs), sum(x["seconds"] for x in runs)
            res[key] = {"rps": round(req / sec, 1), "rounds_rps": [x["rps"] for x in runs],
                        "p50_ms": sorted(x["p50_ms"] for x in runs)[len(runs) // 2],
                        "p99_ms": max(x["p99_ms"] for x in runs),
                        "errors": sum(x["errors"] for x in runs)}
        out[what] = {**res, "ratio": ratio(res["nginx"]["rps"], res["straight"]["rps"])}
        log(f"lab {layout} {what}: nginx {res['nginx']['rps']} req/s ({res['nginx']['rounds_rps']}), "
            f"straight to {len(ways['straight'])} instances {res['straight']['rps']} req/s "
            f"({res['straight']['rounds_rps']}) -> {out[what]['ratio']}")
        if res["nginx"]["errors"] or res["straight"]["errors"]:
            raise BenchError(f"lab {what}: errors (non-2xx, timeouts, socket errors): {res}")
    return out


# --- targets, lab, table ------------------------------------------------------------------------

def judge(fig: dict) -> None:
    def met(key, ok, target):
        if key in fig:
            fig[key]["target"] = target
            fig[key]["met"] = bool(ok)

    f = {k: v for k, v in fig.items() if not (isinstance(v, dict) and "error" in v)}
    if "post_get" in f:
        met("post_get", (f["post_get"]["ratio"] or 0) >= 0.6, ">= 0.6 of healthz")
    if "views" in f:
        v = f["views"]
        met("views", (v["ratio"] or 0) >= 0.8 and v["exact"]
            and (v["db_writes_per_1000_views"] or 0) <= 10,
            ">= 0.8 of healthz, exact, <= 10 DB writes per 1,000 views")
    if "likes" in f:
        lk = f["likes"]
        met("likes", lk["exact"] and lk["converged_s"] is not None and lk["converged_s"] <= 2,
            "report; exact, converged within 2 s")
    if "io_drain" in f:
        f["io_drain"]["target"] = "report the ratio"
    if "ws_hold" in f:
        w = f["ws_hold"]
        met("ws_hold", (w.get("opened") or 0) >= 10000
            and (w.get("rss_mib_per_1000") or 1e9) <= 60,
            ">= 10,000 open, <= 60 MiB RSS per 1,000")
    if "fanout" in f:
        fo = f["fanout"]
        met("fanout", fo.get("p99_ms") is not None and fo["p99_ms"] < 1000
            and fo.get("missing") == 0, "p99 < 1 s, none missing")
    if "latency" in f:
        met("latency", f["latency"]["p99_ms"] < 100, "p99 < 100 ms")


def lab_figures() -> dict:
    out = {"source": str(LAB_TIMINGS.relative_to(ROOT)), "nginx_vs_straight": None,
           "up_from_nothing_s": None, "converge_again_s": None, "measured": False}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(LAB_TIMINGS.read_text())
        for key, name in (("up_from_nothing", "up_from_nothing_s"),
                          ("converge_again", "converge_again_s")):
            if isinstance(data.get(key), dict):
                out[name] = data[key].get("seconds")
                out[name.replace("_s", "_at")] = data[key].get("at")
        if isinstance(data.get("nginx_vs_straight"), dict):
            out["nginx_vs_straight"] = data["nginx_vs_straight"].get("ratio")
            out["nginx_vs_straight_lb_own_core"] = data["nginx_vs_straight"].get("ratio_lb_own_core")
        out["measured"] = any(out[k] is not None for k in
                              ("up_from_nothing_s", "converge_again_s", "nginx_vs_straight"))
    return out


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per frame from py-spy's collapsed stacks."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r"^/.*?/site-packages/", "", f) for f in stack.split(";")]
        frames = [re.sub(r"\(/\S*?/(backend|tests)/", r"(\1/", f) for f in frames]
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    lines = [f"{path.name}: {total} samples (CPU-busy only, 100 Hz)", "", "self %  frame"]
    for f, c in sorted(self_c.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"{100.0 * c / max(total, 1):6.1f}  {f}")
    lines += ["", "incl %  frame"]
    for f, c in sorted(incl.items(), key=lambda x: -x[1])[:top * 2]:
        lines.append(f"{100.0 * c / max(total, 1):6.1f}  {f}")
    return "\n".join(lines) + "\n"


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def table(res: dict) -> str:
    f = {k: v for k, v in res["figures"].items() if not (isinstance(v, dict) and "error" in v)}
    failed = {k: v["error"] for k, v in res["figures"].items() if k not in f}
    m = res["machine"]
    rows = [("figure", "measured", "floor", "ratio", "target", "met")]

    def ok(x):
        return "-" if x.get("met") is None else ("yes" if x["met"] else "NO")

    def cpu_row(x):
        c, fl, cr = x.get("cpu_ms_per_req") or {}, x.get("floor_cpu_ms_per_req") or {}, \
            x.get("cpu_ratio") or {}
        if c:
            rows.append(("  CPU ms/request web (whole stack)",
                         f"{fmt(c.get('web'))} ({fmt(c.get('stack'))})",
                         f"{fmt(fl.get('web'))} ({fmt(fl.get('stack'))})",
                         f"{fmt(cr.get('web'))} ({fmt(cr.get('stack'))})", "", ""))

    h = f.get("healthz_rps", {})
    rows.append(("GET /healthz req/s (floor, all rounds)", fmt(h.get("value")),
                 f"rounds {fmt(h.get('min'))}..{fmt(h.get('max'))}", "", "", ""))
    if "post_get" in f:
        x = f["post_get"]
        rows.append(("GET /api/posts/<id> req/s (one post)", fmt(x["rps"]), fmt(x["floor_rps"]),
                     fmt(x["ratio"]), ">= 0.6", ok(x)))
        cpu_row(x)
    if "views" in f:
        x = f["views"]
        rows.append((f"views/s over {res['config']['posts']:,} posts", fmt(x["rps"]),
                     fmt(x["floor_rps"]), fmt(x["ratio"]), ">= 0.8", ok(x)))
        cpu_row(x)
        if x.get("cold"):
            c = x["cold"]
            # CPU per read, not a rate: wrk's run lasts its full -d even after every post was
            # read (thread:stop() ends the requests, not the clock).
            rows.append(("  first read of each post (cold): CPU ms/read",
                         f"{fmt((c.get('cpu_ms_per_req') or {}).get('web'))} "
                         f"({fmt((c.get('cpu_ms_per_req') or {}).get('stack'))})",
                         f"{fmt(c.get('requests'))} reads", "", "", ""))
        rows.append(("  views served = in PostgreSQL",
                     f"{fmt(x['views_served'])} = {fmt(x['views_in_db'])}", "", "",
                     "exact", "yes" if x["exact"] else "NO"))
        rows.append(("  DB writes per 1,000 views", fmt(x["db_writes_per_1000_views"]),
                     f"{x['view_batches']} batches", "", "<= 10", ""))
    if "likes" in f:
        x = f["likes"]
        rows.append(("likes/s over HTTP (many users)", fmt(x["rps"]), fmt(x["floor_rps"]),
                     fmt(x["ratio"]), "report", ""))
        cpu_row(x)
        rows.append(("  likes exact, converged after", f"{fmt(x['converged_s'])} s",
                     f"{fmt(x['likes_rows'])} likes", "", "exact, <= 2 s", ok(x)))
    if "io_drain" in f:
        x = f["io_drain"]
        rows.append(("io queue: update_post_counts/s", fmt(x["counter_per_s"]),
                     f"no-op {fmt(x['noop_per_s'])}/s", fmt(x["ratio"]), "report", "-"))
    if "latency" in f:
        x = f["latency"]
        rows.append((f"GET post p50/p99 at {fmt(x['achieved_fraction'])} of saturation",
                     f"{fmt(x['p50_ms'])} / {fmt(x['p99_ms'])} ms",
                     f"{fmt(x['rps'])} of {fmt(x['saturating_rps'])} req/s", "",
                     "p99 < 100 ms", ok(x)))
    if "ws_hold" in f:
        x = f["ws_hold"]
        rows.append(("websockets open at once (1 instance)", fmt(x.get("opened")),
                     f"of {fmt(x.get('wanted'))}", "", ">= 10,000", ok(x)))
        rows.append(("  RSS per 1,000 websockets", fmt(x.get("rss_mib_per_1000"), " MiB"),
                     f"{fmt(x.get('rss_base_mib'))} -> {fmt(x.get('rss_peak_mib'))} MiB", "",
                     "<= 60 MiB", ""))
    if "fanout" in f:
        x = f["fanout"]
        rows.append((f"counts fan-out to {fmt(x.get('subscribed'))} subscribers p50/p99",
                     f"{fmt(x.get('p50_ms'))} / {fmt(x.get('p99_ms'))} ms",
                     f"missing {fmt(x.get('missing'))}", "", "p99 < 1 s", ok(x)))
    for key, err in failed.items():
        rows.append((f"{key}: FAILED", err.splitlines()[0][:60], "", "", "", "NO"))
    lab = f.get("lab", {})
    own = lab.get("nginx_vs_straight_lb_own_core")
    rows.append(("through nginx vs straight (lab): lb own core / shared cores",
                 f"{fmt(own)} / {fmt(lab.get('nginx_vs_straight'))}", "same instances", "",
                 ">= 0.85", "not measured" if own is None else ("yes" if own >= 0.85 else "NO")))
    rows.append(("make lab from nothing / converge again",
                 f"{fmt(lab.get('up_from_nothing_s'))} / {fmt(lab.get('converge_again_s'))} s",
                 "timings.json" if lab.get("measured") else "not measured", "",
                 "2nd < 60 s", "" if lab.get("converge_again_s") is None
                 else ("yes" if lab["converge_again_s"] < 60 else "NO")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = [f"machine: {m['nproc']} x {m['cpu_model']}, load {m['load_before'][0]} before / "
           f"{m['load_after'][0]} after (1-min; max {m['load1_max']}, mean {m['load1_mean']})"]
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="seconds per scenario (smoke test)")
    ap.add_argument("--out", help="JSON results (default DATA/results.json)")
    ap.add_argument("--data", default=str(ROOT / ".data" / "bench"),
                    help="data dir of the private PostgreSQL/Redis and logs")
    ap.add_argument("--profile", action="store_true", help="py-spy the web/io workers")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a size/duration (users, posts, http_secs, rounds, ...)")
    ap.add_argument("--env", action="append", metavar="KEY=VALUE",
                    help="extra environment for the app processes (tuning experiments, e.g. "
                         "DB_POOL_SIZE=40); recorded in the JSON")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--serve", type=float, metavar="SECONDS",
                    help="set up and seed, then keep the stack for SECONDS (Ctrl-C ends it) "
                         "for investigating by hand; no scenario runs")
    ap.add_argument("--lab", action="store_true",
                    help="measure the running lab LAB_ID instead: through nginx vs straight")
    ap.add_argument("--lab-timings", metavar="FILE",
                    help=f"with --lab: the lab's timings.json to record into ({LAB_TIMINGS})")
    args = ap.parse_args()
    nofile = raise_nofile()
    if args.lab:
        try:
            res = run_lab(args)
        except (BenchError, OSError, ValueError) as e:
            log(f"failed: {e}")
            return 1
        out = Path(args.out) if args.out else Path(args.data) / "lab-results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        for layout in ("shared", "lb_own_core"):
            if layout in res:
                g = res[layout]["post_get"]
                print(f"through nginx vs straight to the same {len(res['instances'])} instances "
                      f"({layout}): GET {res['path']} {g['nginx']['rps']} vs {g['straight']['rps']} "
                      f"req/s -> {g['ratio']}; /healthz {res[layout]['healthz']['ratio']}")
        print(f"JSON: {out}")
        return 0
    if nofile < WORKER_CONNECTIONS:
        log(f"warning: open-files limit {nofile} < {WORKER_CONNECTIONS}; ws_hold may fall short")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    random.seed()
    bench = Bench(args)
    try:
        if args.serve:
            bench.serve(args.serve)
            return 0
        res = bench.run()
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        return 130
    except BenchError as e:
        log(f"failed: {e}")
        return 1
    finally:
        bench.teardown()
    res["command"] = shlex.join([sys.executable, *sys.argv])
    res["nofile"] = nofile
    out = Path(args.out) if args.out else bench.data / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
