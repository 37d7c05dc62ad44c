#!/usr/bin/env python3
"""`make bench`: SynSpirit measured against its own floor, on one machine, over loopback.

    .venv/bin/python tests/bench/run.py [--quick] [--out FILE] [--data DIR] [--profile]
                                        [--only SCENARIO,...]
    LAB_ID=N .venv/bin/python tests/bench/run.py --lab
    LAB_ID=N .venv/bin/python tests/bench/run.py --lab-mixed [--subscribers 2000]

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
  seed            the seed document's design beside ours, same machine and data (seed_compare.py):
                  gunicorn -w 2*nproc+1 GeventWebSocketWorker --worker-connections 2000 and a
                  Celery task .delay()ed per view (update_post_view_count) and per like
                  (update_post_counts), worker --pool=gevent -c 1000 -O fair: for views and
                  likes served/s, counted/s (until the backlog is drained) and the whole
                  stack's CPU per counted action, ours / seed's: views <= 1/3, likes <= 1/2;
                  and Socket.IO long-polling failures without sticky routing (ours: 0)
  search          GET /api/search over search_posts (100,000) more posts of Zipf-distributed
                  Chinese and English words (inserted with SQL, indexed by `flask search
                  index-missing`), six queries each matching > 1,000 posts, 4 connections,
                  interleaved with GET /api/posts/<id>: p50/p95, ratio   target p95 < 50 ms
                  (search_bench.py; runs before lists)
  lists           with list_posts (1,000,000) more posts inserted with SQL (generate_series):
                  the front page GET /api/posts, ?sort=hot, and a cursor page 90 % deep in
                  each order, req/s / GET /api/posts/<id> req/s (one post) in interleaved
                  rounds                                                     target >= 0.5
                  (runs last: the million rows stay; `--only lists` runs it alone)
  lab             through nginx vs straight and `make lab` timings: read from
                  .cache/lab/timings.json when present, else "not measured"

--quick: a few seconds per scenario and small counts (the backend suite's smoke run).
--plots DIR: where the two PNGs go (default DATA): the latency distribution of each request kind
  and ours against the seed's design (tests/bench/plots.py; it also redraws them from a JSON).
--profile: also records the web worker (and the io worker during io_drain) with py-spy
  (--nonblocking, 100 Hz) and writes collapsed stacks plus a top-frames summary to
  DATA/profiles/ (perturbs the figures a little; use it to explain a miss).
--lab: instead of all this, against the running lab LAB_ID: GET /api/posts/<id> through
  nginx vs straight to the same web instances, wrk on lb1 both ways (ratio), recorded in the
  lab's timings.json (--lab-timings FILE) where the table's lab row reads it.
--lab-mixed: instead of all this, the whole site under a community's mix through nginx on the
  running lab LAB_ID, with --subscribers Socket.IO clients subscribed (tests/bench/lab_mixed.py):
  saturation, then 70 % of it open-loop: p50/p99 per request kind, fan-out delay, CPU per
  request of each group of hosts; then likes and comments alone against /healthz.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # testkit, and this folder as the package `bench`
from bench.common import (  # noqa: E402
    FIGURES,  # noqa: F401  (the smoke test reads it from here)
    LAB_TIMINGS,
    SCENARIOS,
    WORKER_CONNECTIONS,
    BenchError,
    cpu_model,
    log,
    raise_nofile,
)
from bench.lab_mixed import run_mixed, summary  # noqa: E402
from bench.lab_nginx import run_lab  # noqa: E402
from bench.report import judge, lab_figures, table  # noqa: E402
from bench.scenarios import Scenarios  # noqa: E402
from bench.search_bench import SearchBench  # noqa: E402
from bench.seed_compare import SeedCompare  # noqa: E402
from bench.stack import Stack  # noqa: E402


def measure(stack: Stack, args) -> dict:
    """Start the stack, seed it, run the scenarios asked for (--only) and return every figure,
    judged, with the machine and the configuration they were measured on."""
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        raise BenchError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    stack.start_sampler()
    started = time.time()
    load_before = os.getloadavg()
    stack.setup()
    stack.seed()
    scenarios = Scenarios(stack)
    fig: dict = {}
    if "post_get" in only:
        fig["post_get"] = scenarios.post_get()
    if "views" in only or "latency" in only:
        fig["views"] = scenarios.views()
    if "likes" in only:
        fig["likes"] = scenarios.likes()
    if "comments" in only:
        fig["comments"] = scenarios.comments()
    fig["healthz_rps"] = scenarios.healthz()
    later = (("latency", lambda: scenarios.latency(fig["views"]["rps"])),
             ("io_drain", scenarios.io_drain), ("ws_hold", scenarios.ws_hold),
             ("fanout", scenarios.fanout), ("seed", SeedCompare(scenarios).run),
             ("search", SearchBench(scenarios).run), ("lists", scenarios.lists))
    for key, fn in later:
        if key not in only:
            continue
        try:
            fig[key] = fn()
        except (BenchError, subprocess.SubprocessError, OSError, ValueError) as e:
            # one scenario failing must not lose the others' figures
            log(f"{key} failed: {type(e).__name__}: {e}")
            fig[key] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            stack.check_alive()
    fig["lab"] = lab_figures()
    # overall exactness: every GET of a post served so far is in PostgreSQL
    settled = stack.settle_views()
    total_served, total_db = stack.post_views_served(), stack.db_views()
    # the seed's design counted views of its own (its web is not in the metrics read above)
    total_db -= (fig.get("seed") or {}).get("seed_views_in_db", 0)
    judge(fig)
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": bool(args.quick),
        "machine": {
            "nproc": os.cpu_count(), "cpu_model": cpu_model(),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "load1_max": round(max((s[1][0] for s in stack.loads), default=0), 2),
            "load1_mean": round(sum(s[1][0] for s in stack.loads) / len(stack.loads), 2)
            if stack.loads else None,
        },
        "config": {**stack.p, "worker_connections": WORKER_CONNECTIONS,
                   "env_overrides": args.env or [],
                   "url": stack.url, "data": str(stack.data)},
        "views_total": {"served": total_served, "in_db": total_db,
                        "exact": settled and total_served == total_db},
        "figures": fig,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="seconds per scenario (smoke test)")
    ap.add_argument("--out", help="JSON results (default DATA/results.json)")
    ap.add_argument("--data", default=str(ROOT / ".data" / "bench"),
                    help="data dir of the private PostgreSQL/Redis and logs")
    ap.add_argument("--profile", action="store_true", help="py-spy the web/io workers")
    ap.add_argument("--plots", metavar="DIR",
                    help="where the PNGs go (plots.py: bench-latency.png, bench-vs-seed.png; "
                         "default DATA; docs/img for docs/performance.md)")
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
    ap.add_argument("--lab-mixed", action="store_true",
                    help="the whole site under a mix through nginx on the running lab LAB_ID")
    ap.add_argument("--subscribers", type=int, default=2000,
                    help="with --lab-mixed: Socket.IO clients subscribed (default 2000)")
    ap.add_argument("--mix", help="with --lab-mixed: weights to change, e.g. login=0,like=20 "
                                  "(kinds and defaults: bench/lab_mixed.py MIX)")
    args = ap.parse_args()
    nofile = raise_nofile()
    if args.lab_mixed:
        try:
            res = run_mixed(args)
        except (BenchError, OSError, ValueError, subprocess.TimeoutExpired) as e:
            log(f"failed: {e}")
            return 1
        res["command"] = shlex.join([sys.executable, *sys.argv])
        out = Path(args.out) if args.out else Path(args.data) / "lab-mixed-results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(summary(res))
        print(f"JSON: {out}")
        return 0
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
    stack = Stack(args)
    try:
        if args.serve:
            stack.serve(args.serve)
            return 0
        res = measure(stack, args)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        return 130
    except BenchError as e:
        log(f"failed: {e}")
        return 1
    finally:
        stack.teardown()
    res["command"] = shlex.join([sys.executable, *sys.argv])
    res["nofile"] = nofile
    out = Path(args.out) if args.out else stack.data / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    print(f"\nJSON: {out}")
    try:
        from bench.plots import make_plots

        for png in make_plots(res, Path(args.plots) if args.plots else stack.data):
            print(f"plot: {png}")
    except ImportError as e:  # matplotlib is in tests/requirements.txt
        log(f"no plots: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
