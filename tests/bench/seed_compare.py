"""`--only seed`: SynSpirit's counting against the seed document's design, on the same machine,
database and seeded data, in one run (issue 19, item 2).

The seed's design (seed_design.py) runs beside SynSpirit's stack on a port of its own: gunicorn
with `-w 2*nproc+1` GeventWebSocketWorker and `--worker-connections 2000`, a Celery task
`.delay()`ed for every view (update_post_view_count) and every like (update_post_counts), its
worker `--pool=gevent -c 1000 -O fair --prefetch-multiplier=1` on the queue `seed-io`.

For views and for likes, each design gets the same wrk load (same connections, same seconds,
same posts and users), interleaved (ours views, seed views, ours likes, seed likes) so that both
share the machine's weather, and we measure:

  served/s       2xx responses per second while wrk ran
  counted/s      (increase in PostgreSQL: views_count, or likes_count) / (seconds from the start
                 of the load until the backlog is drained: the task queue empty, nothing
                 unacknowledged, for ours the view buffer flushed, every post's likes_count equal
                 to its rows); with no growing backlog it equals served/s
  backlog        the task queue's length, sampled every 0.25 s, at the end of the load and max
  CPU per count  CPU seconds of the whole stack (web worker(s) + that design's io worker + Redis
                 + PostgreSQL with its exited backends), from the start of the load until
                 drained, / the count increase

and the ratios ours / seed's with the goals: CPU per counted view <= 1/3, per counted like <= 1/2.

Then Socket.IO long-polling without sticky routing: Engine.IO v4 polling sessions over plain
HTTP, a new TCP connection for each request (as behind a balancer that is not sticky, or the
browser's second connection), against each design: the share of requests answered other than 200
(python-engineio answers 400 to a sid its process does not know). One worker: 0.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import BENCH, BenchError, children, log, proc_cpu, ratio
from bench.load import lua_many_posts, wrk
from testkit.processes import BACKEND, VENV_BIN, WORKER_OPTIONS, free_port

SEED_QUEUE = "seed-io"
GOALS = {"views": 1 / 3, "likes": 1 / 2}  # ours / seed's CPU per counted action, at most
MISMATCH_SQL = """
    SELECT count(*) FROM posts p WHERE p.likes_count <>
      (SELECT count(*) FROM reactions r WHERE r.post_id = p.id AND r.action = 'like')"""
# Before each measured like run: no post liked, so that every like of the run is a new row that
# both designs must count (a like of a pair liked before is answered and counts nothing: with
# --quick's 12 users x 40 posts, the earlier runs had liked nearly every pair, and the seed's
# run, which comes after ours, once counted 0).
UNLIKE_ALL_SQL = """
    WITH unliked AS (DELETE FROM reactions WHERE action = 'like' AND post_id IS NOT NULL
                     RETURNING post_id),
         zeroed AS (UPDATE posts SET likes_count = 0 WHERE likes_count <> 0 RETURNING id)
    SELECT (SELECT count(*) FROM unliked) + (SELECT count(*) FROM zeroed)"""


class Design:
    """One design under load: where it answers, which queue holds its backlog, its CPU."""

    def __init__(self, name: str, url: str, queue: str, cpu_seconds, web_workers: int):
        self.name, self.url, self.queue = name, url, queue
        self.cpu_seconds, self.web_workers = cpu_seconds, web_workers


class SeedCompare:
    def __init__(self, scenarios):
        self.sc = scenarios
        self.stack = scenarios.stack
        self.p = scenarios.p
        self.seed_views_in_db = 0  # views counted by the seed's design (warm-ups included)

    # -- the seed's processes --

    def start_seed(self) -> Design:
        st = self.stack
        workers = 2 * (os.cpu_count() or 1) + 1
        port = free_port()
        self.seed_web_cmd = [str(VENV_BIN / "gunicorn"), "-w", str(workers), "-k",
                             "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
                             "--worker-connections", "2000", "--bind", f"127.0.0.1:{port}",
                             # not the seed's: keeps gunicorn >= 25.1 out of ~/.gunicorn
                             "--no-control-socket", "--pythonpath", str(BENCH),
                             "seed_design:app"]
        # 2n+1 processes with SQLAlchemy's pool each: a smaller pool per process keeps them all
        # within the private PostgreSQL's max_connections (300) beside SynSpirit's stack.
        self.seed_env = {"DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10"}
        st.spawn("seed_web", self.seed_web_cmd, cwd=BACKEND, extra_env=self.seed_env)
        node = f"seed-io-bench-{st.run_id}@{socket.gethostname()}"
        self.seed_io_cmd = [str(VENV_BIN / "celery"), "-A", "seed_design:celery_app", "worker",
                            "--pool=gevent", "-c", "1000", "-O", "fair",
                            "--prefetch-multiplier=1", "-Q", SEED_QUEUE, "-n", node,
                            *WORKER_OPTIONS, "--loglevel=WARNING"]
        st.spawn("seed_io", self.seed_io_cmd, cwd=BENCH)
        url = f"http://127.0.0.1:{port}"
        self.wait_ready(url)
        st.wait_worker(node, 120)
        master = st.procs.proc("seed_web").pid
        io_pid = st.procs.proc("seed_io").pid
        kids = children(master)
        log(f"seed's design up: {url} ({len(kids)} gunicorn workers), worker {node}")

        def cpu() -> dict:
            web = sum(proc_cpu(k) for k in kids)
            return {"web": web, "stack": web + proc_cpu(io_pid) + self.shared_cpu()}

        return Design("seed", url, SEED_QUEUE, cpu, workers)

    def wait_ready(self, url: str) -> None:
        import requests

        def ok() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(url + "/readyz", timeout=2).status_code == 200
            return False

        self.stack.wait_answer(ok, f"{url}/readyz", 120)

    def shared_cpu(self) -> float:
        """Redis + PostgreSQL (the postmaster with its exited backends, and its live ones)."""
        pids = self.stack.cpu_pids
        total = proc_cpu(pids["redis"]) if "redis" in pids else 0.0
        pm = pids.get("postmaster")
        if pm:
            total += proc_cpu(pm, reaped=True) + sum(proc_cpu(k) for k in children(pm))
        return total

    # -- one design, one kind of action, from the start of the load until counted --

    def settled(self, d: Design, kind: str) -> bool:
        st = self.stack
        if st.redis.llen(d.queue) or st.redis.hlen("unacked"):
            return False
        if kind == "views" and d.name == "ours":
            buffered = sum(st.redis.hlen(f"synspirit:views:{k}") for k in ("post", "article"))
            if buffered or st.redis.llen("synspirit:views:batches") \
                    or st.redis.exists("synspirit:views:flush-lock"):
                return False
        if kind == "likes":
            return int(st.sql(MISMATCH_SQL)) == 0
        return True

    def count(self, kind: str) -> int:
        col = "views_count" if kind == "views" else "likes_count"
        return int(self.stack.sql(f"SELECT COALESCE(sum({col}), 0) FROM posts"))

    def wait_settled(self, d: Design, kind: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled(d, kind):
                return True
            time.sleep(0.1)
        return False

    def counted(self, d: Design, kind: str, script: str) -> dict:
        st, secs, conns = self.stack, self.p["http_secs"], self.p["wrk_conns"]
        before_warm = self.count(kind)
        wrk(st, f"seed_warm_{d.name}_{kind}", script, "/", max(self.p["warm_secs"], secs / 2),
            conns, url=d.url, cpu_seconds=d.cpu_seconds)
        if not self.wait_settled(d, kind, 120):
            raise BenchError(f"{d.name}: the warm-up's {kind} did not settle in 120 s")
        if kind == "likes":
            st.sql(UNLIKE_ALL_SQL)
        time.sleep(0.5)
        backlog: list[list[float]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    backlog.append([round(time.monotonic() - t0, 2), st.redis.llen(d.queue)])
                stop.wait(0.25)

        count0, cpu0 = self.count(kind), d.cpu_seconds()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            r = wrk(st, f"seed_{d.name}_{kind}", script, "/", secs, conns, url=d.url,
                    cpu_seconds=d.cpu_seconds)
            t_load = time.monotonic() - t0
            at_end = st.redis.llen(d.queue)
            time.sleep(0.5)  # requests still in flight on the server when wrk stopped
            limit = max(60.0, 20 * secs)
            drained = self.wait_settled(d, kind, limit)
            t_drained = time.monotonic() - t0
            cpu1 = d.cpu_seconds()
        finally:
            stop.set()
            sampler.join(2)
        counted = self.count(kind) - count0
        if d.name == "seed" and kind == "views":
            self.seed_views_in_db += self.count(kind) - before_warm
        served = r["requests"] - r["non_2xx"]
        cpu = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0}
        out = {
            "design": d.name, "web_workers": d.web_workers, "queue": d.queue,
            "served": served, "served_per_s": round(served / r["seconds"], 1),
            "counted": counted, "seconds_to_counted": round(t_drained, 2),
            "counted_per_s": round(counted / t_drained, 1) if t_drained else None,
            "load_s": round(t_load, 2), "drain_after_load_s": round(t_drained - t_load, 2),
            "drained": drained, "backlog_at_end_of_load": at_end,
            "backlog_max": max((b[1] for b in backlog), default=0), "backlog": backlog,
            "cpu_s": cpu,
            "cpu_ms_per_counted": {k: round(1000.0 * v / counted, 3) if counted else None
                                   for k, v in cpu.items()},
            "non_2xx": r["non_2xx"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "pcts_ms": r["pcts_ms"], "command": r["command"],
            "load1": round(os.getloadavg()[0], 2),
        }
        if not drained:
            log(f"{d.name} {kind}: backlog not drained after {limit:.0f} s")
        log(f"{d.name} {kind}: served {out['served_per_s']}/s, counted {out['counted_per_s']}/s "
            f"({counted} in {t_drained:.1f} s, backlog at end {at_end}, max "
            f"{out['backlog_max']}), CPU ms per counted {out['cpu_ms_per_counted']}")
        return out

    # -- Socket.IO long-polling without sticky routing --

    def polling(self, url: str, sessions: int, posts_each: int) -> dict:
        """Engine.IO v4 polling sessions: a handshake (GET), then POST "40" (connect to the
        namespace) and `posts_each` POSTs of "3" (a pong), then "1" (close), each on a new
        connection. Counts the requests after the handshake answered other than 200."""
        import requests

        base = url + "/socket.io/?EIO=4&transport=polling"
        hdr = {"Connection": "close", "Content-Type": "text/plain;charset=UTF-8"}

        def session(_i: int) -> tuple[int, int, list[str]]:
            r = requests.get(base, headers=hdr, timeout=10)
            if r.status_code != 200 or not r.text.startswith("0"):
                return 0, 0, [f"handshake {r.status_code}"]
            sid = json.loads(r.text[1:])["sid"]
            done = failed = 0
            errors = []
            for body in ["40", *["3"] * posts_each, "1"]:
                rr = requests.post(f"{base}&sid={sid}", data=body, headers=hdr, timeout=10)
                done += 1
                if rr.status_code != 200:
                    failed += 1
                    # "Invalid session <sid>": one kind of error, whatever the sid
                    errors.append(f"{rr.status_code} {rr.text.replace(sid, '<sid>')[:60]}")
            return done, failed, errors

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(session, range(sessions)))
        total = sum(r[0] for r in results)
        failed = sum(r[1] for r in results)
        errors: dict[str, int] = {}
        for r in results:
            for e in r[2]:
                errors[e] = errors.get(e, 0) + 1
        return {"sessions": sessions, "requests": total, "failed": failed,
                "failure_rate": round(failed / total, 4) if total else None,
                "sessions_with_a_failure": sum(1 for r in results if r[1] or not r[0]),
                "handshakes_failed": sum(1 for r in results if not r[0]),
                "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
                "seconds": round(time.monotonic() - t0, 2)}

    # -- the scenario --

    def run(self) -> dict:
        st = self.stack
        st.settle_tasks(30)
        ours = Design("ours", st.url, "io", st.cpu_seconds, 1)
        seed = self.start_seed()
        res: dict = {"ours": {}, "seed": {}}
        try:
            # Views of seed_posts posts (50), not all: each of the seed's 2n+1 processes keeps
            # its own item cache (60 s), which the warm-up must fill for every post in every
            # process, else the seed's CPU per view would include reads of cold posts, a cost
            # of the item cache, not of counting. 50 posts x 5 processes fill within seconds.
            ids = st.post_ids[:self.p["seed_posts"]]
            views = lua_many_posts(ids, 5)
            likes = self.sc.like_script(st.post_ids, 6)
            for kind, script in (("views", views), ("likes", likes)):
                for d in (ours, seed):  # interleaved: both share the machine's weather
                    res[d.name][kind] = self.counted(d, kind, script)
            n, k = self.p["poll_sessions"], 5
            for d in (ours, seed):
                res[d.name]["polling"] = self.polling(d.url, n, k)
                log(f"{d.name} long-polling ({d.web_workers} web worker(s)): "
                    f"{res[d.name]['polling']['failure_rate']} of requests failed")
        finally:
            # kombu's broker pool (broker_pool_limit 10) against -c 1000 greenlets acking at
            # once: "Couldn't ack ... Too many connections", each such task redelivered after
            # the visibility timeout (a view counted twice): counted here, from its log
            with contextlib.suppress(OSError):
                res["seed_ack_failures"] = st.procs.log_of("seed_io").read_text(
                    errors="replace").count("Couldn't ack")
            st.stop("seed_web", "seed_io")
        for kind in ("views", "likes"):
            o, s = res["ours"][kind], res["seed"][kind]
            cpu_r = ratio(o["cpu_ms_per_counted"]["stack"], s["cpu_ms_per_counted"]["stack"])
            res[kind] = {
                "cpu_per_counted_ratio": cpu_r,
                "web_cpu_per_counted_ratio": ratio(o["cpu_ms_per_counted"]["web"],
                                                   s["cpu_ms_per_counted"]["web"]),
                "counted_per_s_ratio": ratio(o["counted_per_s"], s["counted_per_s"]),
                "served_per_s_ratio": ratio(o["served_per_s"], s["served_per_s"]),
                "goal": f"<= {GOALS[kind]:.3g}",
                "met": cpu_r is not None and cpu_r <= GOALS[kind]
                and o["drained"] and s["drained"],
            }
        res["tasks"] = {"views": "update_post_view_count (seed.update_post_view_count here: "
                                 "UPDATE posts SET views_count = views_count + 1)",
                        "likes": "update_post_counts(post_id) (app.tasks.update_post_counts)"}
        res["seed_web_command"] = shlex.join(self.seed_web_cmd)
        res["seed_io_command"] = shlex.join(self.seed_io_cmd)
        res["seed_env"] = self.seed_env
        res["seed_views_in_db"] = self.seed_views_in_db
        res["views_posts"] = len(st.post_ids[:self.p["seed_posts"]])
        return res
