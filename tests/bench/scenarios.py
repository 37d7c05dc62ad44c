"""The scenarios: each runs its load against the stack and returns its figures. HTTP figures
come paired with their floor (/healthz) measured in interleaved rounds of the same run."""
from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import threading
import time
import uuid

from bench.common import BENCH, BenchError, log, ratio, rss_mib
from bench.load import LUA_SEED, combine, lua_list, lua_many_posts, sio, wrk
from bench.profiling import finish_profile, profiled
from testkit.processes import VENV_BIN


class Scenarios:
    """The scenarios run on one stack (bench.stack.Stack, set up and seeded)."""

    def __init__(self, stack):
        self.stack = stack
        self.p = stack.p
        self.healthz_runs: list[dict] = []  # every /healthz round: the floor of the whole run


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
            hs.append(wrk(self.stack, f"healthz_{name}_{i}", "", "/healthz", secs, conns))
            if i == 0:
                prof = profiled(self.stack, name, secs)
            xs.append(wrk(self.stack, f"{name}_{i}", script, path, secs, conns))
            if i == 0:
                profile = finish_profile(prof)
        after = after_last() if after_last else None  # right after the last figure round
        hs.append(wrk(self.stack, f"healthz_{name}_{rounds}", "", "/healthz", secs, conns))
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
        wrk(self.stack, "warm", script, path, self.p["warm_secs"], self.p["wrk_conns"])

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

    def post_get(self) -> dict:
        pid = self.stack.post_ids[0]
        return self.paired("post_get", "", f"/api/posts/{pid}", self.p["http_secs"])

    def views(self) -> dict:
        script = lua_many_posts(self.stack.post_ids, 1)
        # Every post read once first (each instance keeps a post's body for ITEM_CACHE_TTL,
        # 60 s), so that `views` is the steady state of a warm instance; this first pass is
        # reported as `views.cold` (a PostgreSQL read per post), bounded to 60 s.
        cold_script = (f"local ids = {lua_list(self.stack.post_ids)}\nlocal n = #ids\n"
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
        cold_secs = min(60.0, max(2.0, len(self.stack.post_ids) / 200.0))
        cold = wrk(self.stack, "views_cold", cold_script, "/", cold_secs, self.p["wrk_conns"])
        log(f"views, first read of each post (cold): {cold['requests']} requests, "
            f"CPU seconds {cold.get('cpu_s')}")
        self.warm(script, "/")
        self.wait_served_stable(self.stack.post_views_served)
        self.stack.settle_views()
        served0 = self.stack.post_views_served()
        db0, batches0 = self.stack.db_views(), self.stack.view_batches()
        r = self.paired("views", script, "/", self.p["http_secs"])
        r["cold"] = {k: cold.get(k) for k in ("rps", "requests", "seconds", "p50_ms", "p99_ms",
                                              "cpu_s", "command")}
        if cold.get("cpu_s") and cold["requests"]:
            r["cold"]["cpu_ms_per_req"] = {k: round(1000.0 * v / cold["requests"], 3)
                                           for k, v in cold["cpu_s"].items()}
        self.wait_served_stable(self.stack.post_views_served)
        settled = self.stack.settle_views()
        served = self.stack.post_views_served() - served0
        in_db = self.stack.db_views() - db0
        batches = self.stack.view_batches() - batches0
        r.update({
            "views_served": served, "views_in_db": in_db, "exact": settled and served == in_db,
            "client_requests": r["requests"], "view_batches": batches,
            # each batch is one transaction: INSERT INTO view_batches + one UPDATE of all ids
            "db_writes_per_1000_views": round(batches * 1000.0 / served, 3) if served else None,
            "update_statements": batches,
        })
        log(f"views over {len(self.stack.post_ids)} posts: {served} served, {in_db} in "
            f"PostgreSQL, {batches} batches")
        return r

    def like_script(self, post_ids: list[int], seed: int) -> str:
        """wrk's Lua: POST /api/actions (like) by a random seeded user of a random post."""
        tokens = [u["token"] for u in self.stack.users]
        return (f"local tokens = {lua_list(tokens)}\n"
                f"local ids = {lua_list(post_ids)}\n" + LUA_SEED % seed +
                "function request()\n"
                "  local body = '{\"action\": \"like\", \"target_type\": \"post\", "
                "\"target_id\": ' .. ids[math.random(#ids)] .. '}'\n"
                "  return wrk.format(\"POST\", \"/api/actions\", {[\"Authorization\"] = "
                "\"Bearer \" .. tokens[math.random(#tokens)], [\"Content-Type\"] = "
                "\"application/json\"}, body)\nend\n")

    def converge(self, mismatch_sql: str) -> dict:
        """Seconds from now (wrk just stopped; requests still in flight on the server included)
        until no post's count differs from its rows (mismatch_sql counts those that do)."""
        t_end = time.monotonic()
        converged, mismatched = None, None
        while time.monotonic() < t_end + 60:
            mismatched = int(self.stack.sql(mismatch_sql))
            if mismatched == 0:
                converged = round(time.monotonic() - t_end, 2)
                break
            time.sleep(0.1)
        return {"converged_s": converged, "posts_mismatched": mismatched}

    def likes(self) -> dict:
        script = self.like_script(self.stack.post_ids, 2)
        mismatch_sql = """
            SELECT count(*) FROM posts p WHERE p.likes_count <>
              (SELECT count(*) FROM reactions r WHERE r.post_id = p.id AND r.action = 'like')"""
        r = self.paired("likes", script, "/", self.p["like_secs"] / self.p["rounds"],
                        after_last=lambda: self.converge(mismatch_sql))
        rows = int(self.stack.sql("SELECT count(*) FROM reactions WHERE action = 'like' "
                                  "AND post_id IS NOT NULL"))
        cached = int(self.stack.sql("SELECT COALESCE(sum(likes_count), 0) FROM posts"))
        still = int(self.stack.sql(mismatch_sql))
        r.update({"likes_rows": rows, "likes_counted": cached, "posts_mismatched_at_end": still,
                  "exact": r["posts_mismatched"] == 0 and still == 0 and rows == cached,
                  "note": "converged_s: from the end of the last likes round until every "
                          "post's likes_count equals its rows"})
        log(f"likes: {rows} likes stored, converged {r['converged_s']} s after the load")
        return r

    def comments(self) -> dict:
        """POST /api/posts/<id>/comments by a random seeded user on a random post; then every
        post's comments_count must equal its rows."""
        tokens = [u["token"] for u in self.stack.users]
        script = (f"local tokens = {lua_list(tokens)}\n"
                  f"local ids = {lua_list(self.stack.post_ids)}\n" + LUA_SEED % 3 +
                  "function request()\n"
                  "  return wrk.format(\"POST\", \"/api/posts/\" .. ids[math.random(#ids)] .. "
                  "\"/comments\", {[\"Authorization\"] = \"Bearer \" .. "
                  "tokens[math.random(#tokens)], [\"Content-Type\"] = \"application/json\"}, "
                  "'{\"content\": \"A comment of the bench, long enough to be a sentence.\"}')"
                  "\nend\n")
        mismatch_sql = """
            SELECT count(*) FROM posts p WHERE p.comments_count <>
              (SELECT count(*) FROM post_comments c WHERE c.post_id = p.id)"""
        before = int(self.stack.sql("SELECT count(*) FROM post_comments"))
        r = self.paired("comments", script, "/", self.p["like_secs"] / self.p["rounds"],
                        after_last=lambda: self.converge(mismatch_sql))
        rows = int(self.stack.sql("SELECT count(*) FROM post_comments"))
        counted = int(self.stack.sql("SELECT COALESCE(sum(comments_count), 0) FROM posts"))
        r.update({"comments_rows": rows, "comments_added": rows - before,
                  "comments_counted": counted,
                  "exact": r["posts_mismatched"] == 0 and rows == counted})
        log(f"comments: {rows - before} added, converged {r['converged_s']} s after the load")
        return r

    def healthz(self) -> dict:
        """The floor of the whole run: every /healthz round so far (one more when no paired
        scenario ran)."""
        if not self.healthz_runs:
            self.healthz_runs.append(wrk(self.stack, "healthz", "", "/healthz",
                                         self.p["http_secs"], self.p["wrk_conns"]))
        h = combine(self.healthz_runs)
        return {"value": h["rps"], "runs_rps": h["rounds_rps"],
                "min": min(h["rounds_rps"]), "max": max(h["rounds_rps"]),
                "p50_ms": h["p50_ms"], "p99_ms": h["p99_ms"], "pcts_ms": h["pcts_ms"],
                "command": h["command"]}

    def latency(self, sat_rps: float) -> dict:
        target = 0.7 * sat_rps
        conns = self.p["wrk_conns"]
        mean_ms = conns * 1000.0 / target
        # Exponential think time per connection: the connections together approximate a
        # Poisson arrival stream at `target` req/s (as long as latency << mean_ms).
        script = (lua_many_posts(self.stack.post_ids, 3) +
                  f"local mean_ms = {mean_ms:.3f}\n"
                  "function delay()\n  return math.floor(-math.log(1 - math.random()) * "
                  "mean_ms)\nend\n")
        r = wrk(self.stack, "latency", script, "/", self.p["lat_secs"], conns)
        r.update({"saturating_rps": sat_rps, "target_rps": round(target, 1),
                  "achieved_fraction": ratio(r["rps"], sat_rps), "mean_think_ms": mean_ms})
        log(f"latency at {r['rps']} req/s ({r['achieved_fraction']} of {sat_rps}): "
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
        return r

    def _drain(self, task: str, queue: str, node: str, n: int, args_of) -> dict:
        ctl = self.stack.celery.control
        if not ctl.cancel_consumer(queue, destination=[node], reply=True, timeout=5):
            raise BenchError(f"{node} did not cancel its {queue} consumer")
        time.sleep(0.5)
        t_send = time.monotonic()
        prefix = f"bench-{uuid.uuid4().hex[:8]}-"
        with self.stack.celery.producer_or_acquire() as producer:
            for i in range(n):
                self.stack.celery.send_task(task, args=args_of(i), queue=queue,
                                            producer=producer, task_id=f"{prefix}{i}")
        send_s = time.monotonic() - t_send
        queued = self.stack.redis.llen(queue)
        t0 = time.monotonic()
        ctl.add_consumer(queue, destination=[node], reply=True, timeout=5)
        deadline = t0 + max(30.0, 6 * self.p["drain_secs"])
        left = None
        t_first = None
        while time.monotonic() < deadline:
            if t_first is None and self.stack.redis.llen(queue) < queued:
                t_first = time.monotonic()  # the consumer is back (add_consumer takes a while)
            # Queued messages are ours (the consumer was cancelled while they were sent) plus
            # the odd periodic task; reserved-but-unacked ones are matched by task id.
            waiting = self.stack.redis.llen(queue)
            if waiting:
                time.sleep(0.005)
                continue
            left = sum(1 for v in self.stack.redis.hvals("unacked")
                       if f'"{prefix}' in v.decode(errors="replace"))
            if left == 0:
                break
            time.sleep(0.005)
        t_end = time.monotonic()
        secs = t_end - (t_first or t0)
        done = n - (left or 0)
        if left:  # bounded: give up on the rest (counter tasks are idempotent)
            self.stack.redis.delete(queue)
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

    def io_drain(self) -> dict:
        ids = self.stack.post_ids
        self.stack.settle_tasks(30)
        counter = self.drain("app.tasks.update_post_counts", "io", self.stack.io_node,
                             lambda i: [ids[i % len(ids)]])
        log(f"io drain: update_post_counts {counter['per_s']}/s ({counter['tasks']} tasks)")
        if self.stack.args.profile:  # a third batch, profiled (the figures above are not)
            n = int(counter["per_s"] * self.p["drain_secs"])
            prof = profiled(self.stack, "io_drain", self.p["drain_secs"],
                            pid=self.stack.worker_pid("io"))
            self._drain("app.tasks.update_post_counts", "io", self.stack.io_node, max(100, n),
                        lambda i: [ids[i % len(ids)]])
            counter["profile"] = finish_profile(prof)
        node = f"noop-bench-{self.stack.run_id}@{socket.gethostname()}"
        self.stack.spawn("noop", [str(VENV_BIN / "celery"), "-A", "bench_noop", "worker",
                                  "--pool=gevent", "-c", "1000", "-O", "fair",
                                  "--prefetch-multiplier=1", "-Q", "bench-noop", "-n", node,
                                  "--loglevel=WARNING"], cwd=BENCH)
        try:
            self.stack.wait_worker(node, 120)
            noop = self.drain("bench.noop", "bench-noop", node, lambda i: [i])
        finally:
            self.stack.stop("noop")
        log(f"io drain: no-op {noop['per_s']}/s ({noop['tasks']} tasks)")
        return {"counter": counter, "noop": noop, "counter_per_s": counter["per_s"],
                "noop_per_s": noop["per_s"], "ratio": ratio(counter["per_s"], noop["per_s"])}

    def ws_hold(self) -> dict:
        n, hold = self.p["ws_conns"], self.p["ws_hold"]
        time.sleep(1)
        base = rss_mib(self.stack.web_pid)
        proc, events, cmd = sio(self.stack, "hold", "--n", str(n), "--hold", str(hold),
                                "--concurrency", "200", "--open-timeout", "400", timeout=600)
        timer = threading.Timer(600, lambda: proc.kill())
        timer.start()
        result: dict = {"wanted": n, "rss_base_mib": round(base, 1), "command": shlex.join(cmd)}
        try:
            for ev in events:
                if ev.get("event") == "open":
                    result.update(opened=ev["opened"], failed=ev["failed"],
                                  open_seconds=ev["seconds"], errors=ev["errors"])
                    time.sleep(min(1.0, hold / 2))
                    peak = rss_mib(self.stack.web_pid)
                    result["rss_peak_mib"] = round(peak, 1)
                    result["server_gauge"] = int(
                        self.stack.metric("synspirit_socketio_connections"))
                    result["load1"] = os.getloadavg()[0]
                    if ev["opened"]:
                        result["rss_mib_per_1000"] = round((peak - base) * 1000 / ev["opened"], 1)
                elif ev.get("event") == "done":
                    result["alive_after_hold"] = ev["alive_after_hold"]
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        finally:
            timer.cancel()
            self.stack.stop("sio_hold")
        time.sleep(2)
        result["rss_after_close_mib"] = round(rss_mib(self.stack.web_pid), 1)
        log(f"websockets: {result.get('opened')} open at once, "
            f"{result.get('rss_mib_per_1000')} MiB RSS per 1,000")
        return result

    def fanout(self) -> dict:
        import requests

        author = self.stack.users[0]
        r = requests.post(self.stack.url + "/api/posts", timeout=30,
                          headers={"Authorization": f"Bearer {author['token']}"},
                          json={"title": "fan-out target", "content": "watched by many"})
        r.raise_for_status()
        target = r.json()["id"]
        rounds = min(self.p["fan_rounds"], len(self.stack.users) - 1)
        tokfile = self.stack.data / "fanout_tokens.txt"
        tokfile.write_text("\n".join(u["token"] for u in self.stack.users[1:rounds + 1]) + "\n")
        self.stack.settle_tasks(30)
        proc, events, cmd = sio(self.stack, "fanout", "--n", str(self.p["fan_subs"]),
                                "--target-id", str(target), "--tokens", str(tokfile),
                                "--rounds", str(rounds), "--concurrency", "200", timeout=300)
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
            self.stack.stop("sio_fanout")
        for k in ("p50", "p90", "p99", "max"):
            if result.get(k) is not None:
                result[f"{k}_ms"] = round(result.pop(k) * 1000, 1)
        log(f"fan-out to {result.get('subscribed')}: p50 {result.get('p50_ms')} ms, "
            f"p99 {result.get('p99_ms')} ms, missing {result.get('missing')}")
        return result

    # -- lists at a million rows --

    def seed_posts_sql(self, n: int) -> float:
        """n more posts in one INSERT ... SELECT generate_series (not the API), older than the
        ranking's 30-day window (so the every-minute ranking does not rescore them), with
        created_at tied in threes and hot scores tied in tens (the orders' id tie-breaks are
        exercised), then VACUUM ANALYZE as autovacuum would: the planner's statistics and the
        row estimate that `total` reads."""
        authors = [u["id"] for u in self.stack.users]
        t0 = time.monotonic()
        with self.stack.pg.cursor() as cur:
            cur.execute("""
                INSERT INTO posts (author_id, title, content, created_at, updated_at, hot_score)
                SELECT (%s::int[])[1 + i %% %s], 'Seeded post ' || i,
                       repeat('A post inserted with SQL for the list figures. ', 4),
                       now() - interval '40 days' - (i / 3) * interval '1 second',
                       now() - interval '40 days', (i::bigint * 7919 %% 100000) / 1000.0
                FROM generate_series(1, %s) AS i""", (authors, len(authors), n))
            cur.execute("VACUUM ANALYZE posts")
        return round(time.monotonic() - t0, 1)

    def _deep_paths(self, depth: int) -> dict:
        """A page `depth` rows down each order: by cursor (next_cursor's encoding, from the
        row just above it), or by page number where the API has no cursor (the code before
        keyset pagination, for the before/after figures)."""
        try:
            from types import SimpleNamespace

            from app.content.pages import encode_cursor
        except ImportError:
            return {"deep_new": f"/api/posts?page={depth // 20 + 1}",
                    "deep_hot": f"/api/posts?sort=hot&page={depth // 20 + 1}"}
        out = {}
        for name, sort, cols in (("deep_new", "new", "created_at, id"),
                                 ("deep_hot", "hot", "hot_score, id")):
            with self.stack.pg.cursor() as cur:
                cur.execute(f"SELECT {cols} FROM posts ORDER BY {cols.replace(',', ' DESC,')}"
                            f" DESC OFFSET %s LIMIT 1", (depth - 1,))
                a, b = cur.fetchone()
            row = (SimpleNamespace(created_at=a, id=b) if sort == "new"
                   else SimpleNamespace(hot_score=a, id=b))
            out[name] = (f"/api/posts?{'sort=hot&' if sort == 'hot' else ''}"
                         f"cursor={encode_cursor(sort, row)}")
        return out

    def lists(self) -> dict:
        import requests

        n = self.p["list_posts"]
        log(f"lists: inserting {n:,} posts with SQL")
        seed_s = self.seed_posts_sql(n)
        rows = int(self.stack.sql("SELECT count(*) FROM posts"))
        log(f"lists: {rows:,} posts ({seed_s} s to insert and VACUUM ANALYZE)")
        paths = {"post_get": f"/api/posts/{self.stack.post_ids[0]}",
                 "front": "/api/posts", "hot": "/api/posts?sort=hot",
                 **self._deep_paths(int(rows * 0.9))}
        for name, path in paths.items():
            r = requests.get(self.stack.url + path, timeout=600)
            if r.status_code != 200:
                raise BenchError(f"lists: {path} answered {r.status_code}: {r.text[:300]}")
            body = r.json()
            if name != "post_get" and not body.get("items"):
                raise BenchError(f"lists: {path} has no items")
        conns, secs = min(16, self.p["wrk_conns"]), self.p["list_secs"]
        runs: dict[str, list] = {k: [] for k in paths}
        for path in paths.values():
            wrk(self.stack, "warm", "", path, self.p["warm_secs"], conns)
        for i in range(self.p["rounds"]):
            for name, path in paths.items():
                runs[name].append(wrk(self.stack, f"lists_{name}_{i}", "", path, secs, conns))
        res = {k: combine(v) for k, v in runs.items()}
        base = res["post_get"]
        out: dict = {"posts": rows, "seed_s": seed_s, "paths": paths, "conns": conns,
                     "post_get_rps": base["rps"], "post_get_p50_ms": base["p50_ms"],
                     "post_get_cpu_ms_per_req": base["cpu_ms_per_req"]}
        for name in ("front", "hot", "deep_new", "deep_hot"):
            x = res[name]
            out[name] = {"rps": x["rps"], "p50_ms": x["p50_ms"], "p99_ms": x["p99_ms"],
                         "cpu_ms_per_req": x["cpu_ms_per_req"], "non_2xx": x["non_2xx"],
                         "rounds_rps": x["rounds_rps"], "ratio": ratio(x["rps"], base["rps"]),
                         "cpu_ratio": {k: ratio(base["cpu_ms_per_req"].get(k), v)
                                       for k, v in x["cpu_ms_per_req"].items() if v}}
            log(f"lists {name}: {x['rps']} req/s vs one post {base['rps']} -> "
                f"{out[name]['ratio']}; p50 {x['p50_ms']} ms vs {base['p50_ms']} ms; CPU ms "
                f"{x['cpu_ms_per_req']} vs {base['cpu_ms_per_req']}")
        out["ratio"] = min(out[k]["ratio"] or 0 for k in ("front", "hot", "deep_new", "deep_hot"))
        return out
