"""`make bench` must not rot: a --quick run of tests/bench/run.py (its own private stack under
.data/bench-smoke, a second or two per scenario) writes every figure to its JSON.

Never gates on an absolute number or on a target being met: the machine may be busy. It only
checks that each scenario ran and produced numbers, and the two exactness checks that do not
depend on speed (views in PostgreSQL equal the views served; likes counts equal their rows).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RUN = ROOT / "tests" / "bench" / "run.py"


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x >= 0


@pytest.mark.stack  # the bench starts PostgreSQL and Redis of its own
@pytest.mark.timeout(900)
@pytest.mark.skipif(os.geteuid() != 0, reason="the bench starts a private PostgreSQL (root)")
def test_bench_quick_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(out),
         "--data", str(ROOT / ".data" / "bench-smoke")],
        capture_output=True, text=True, timeout=850, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    res = json.loads(out.read_text())
    f = res["figures"]
    # backend/run.py is also importable as `run`: load the bench's module by its path
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    bench_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_run)
    assert set(bench_run.FIGURES) <= set(f), sorted(set(bench_run.FIGURES) - set(f))
    assert _number(f["healthz_rps"]["value"]) and f["healthz_rps"]["value"] > 0
    for key in ("post_get", "views", "likes", "comments"):
        assert _number(f[key]["rps"]) and _number(f[key]["floor_rps"]), key
        assert _number(f[key]["ratio"]), key
        assert f[key]["non_2xx"] == 0, (key, f[key])
    assert f["views"]["views_served"] > 0
    assert f["views"]["exact"], f["views"]
    assert _number(f["views"]["db_writes_per_1000_views"])
    assert f["likes"]["exact"], f["likes"]
    assert _number(f["likes"]["converged_s"])
    assert f["comments"]["comments_added"] > 0 and f["comments"]["exact"], f["comments"]
    assert _number(f["latency"]["p50_ms"]) and _number(f["latency"]["p99_ms"])
    assert _number(f["io_drain"]["counter_per_s"]) and _number(f["io_drain"]["noop_per_s"])
    assert _number(f["io_drain"]["ratio"])
    assert f["ws_hold"]["opened"] > 0 and _number(f["ws_hold"]["rss_mib_per_1000"])
    assert f["fanout"]["subscribed"] > 0 and _number(f["fanout"]["p99_ms"])
    assert f["fanout"]["missing"] == 0
    for key in ("front", "hot", "deep_new", "deep_hot"):  # lists at list_posts rows
        assert _number(f["lists"][key]["rps"]) and _number(f["lists"][key]["ratio"]), key
        assert f["lists"][key]["non_2xx"] == 0, (key, f["lists"][key])
    assert "cursor=" in f["lists"]["paths"]["deep_hot"]
    x = f["search"]  # search over search_posts rows (search_bench.py)
    assert _number(x["p50_ms"]) and _number(x["p95_ms"]) and _number(x["ratio"]), x
    assert x["search"]["non_2xx"] == 0 and x["floor"]["non_2xx"] == 0, x
    assert all(q["items"] > 0 for q in x["queries"].values()), x["queries"]
    seed = f["seed"]  # the seed's design side by side (seed_compare.py)
    for kind in ("views", "likes"):
        for design in ("ours", "seed"):
            x = seed[design][kind]
            assert x["counted"] > 0 and x["drained"], (design, kind, x)
            assert _number(x["served_per_s"]) and _number(x["counted_per_s"]), (design, kind)
            assert _number(x["cpu_ms_per_counted"]["stack"]), (design, kind)
            assert x["non_2xx"] == 0, (design, kind, x)
        assert _number(seed[kind]["cpu_per_counted_ratio"]), kind
        assert isinstance(seed[kind]["met"], bool), kind
    assert seed["ours"]["polling"]["failed"] == 0, seed["ours"]["polling"]  # one worker
    assert seed["seed"]["polling"]["requests"] > 0
    for key in ("healthz_rps", "post_get", "views", "likes", "latency"):  # latency distributions
        assert len(f[key]["pcts_ms"]) > 10 and all(_number(v) for _, v in f[key]["pcts_ms"]), key
    assert {"nginx_vs_straight", "up_from_nothing_s", "converge_again_s"} <= set(f["lab"])
    assert res["machine"]["nproc"] >= 1 and res["machine"]["load_before"]
    assert "| figure" in done.stdout  # the table was printed
