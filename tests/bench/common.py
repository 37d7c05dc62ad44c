"""What every part of the bench shares: where things are, the sizes of a run (full or --quick),
the scenarios and figures, logging, the error the bench fails with, a figure's ratio to
its floor, and what /proc says of a process or the machine."""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import time
from pathlib import Path

from testkit import lab

ROOT = Path(__file__).resolve().parents[2]

BENCH = ROOT / "tests" / "bench"
DB_NAME = "synspirit_bench"
WORKER_CONNECTIONS = 12000  # above the 10,000 websockets of ws_hold
LAB_TIMINGS = lab.STATE / "timings.json"

PROFILES = {
    "full": dict(users=200, posts=2000, http_secs=5, rounds=2, warm_secs=2, wrk_conns=64,
                 like_secs=10, lat_secs=15, drain_secs=10, ws_conns=10000, ws_hold=10,
                 fan_subs=1000, fan_rounds=10, list_posts=1_000_000, list_secs=5,
                 seed_posts=50, poll_sessions=100, search_posts=100_000, search_secs=5,
                 search_alone=40),
    "quick": dict(users=12, posts=40, http_secs=1, rounds=1, warm_secs=0.5, wrk_conns=16,
                  like_secs=2, lat_secs=2, drain_secs=2, ws_conns=100, ws_hold=1,
                  fan_subs=20, fan_rounds=3, list_posts=20_000, list_secs=1,
                  seed_posts=40, poll_sessions=10, search_posts=3_000, search_secs=1,
                  search_alone=5),
}
SCENARIOS = ("post_get", "views", "likes", "comments", "latency", "io_drain", "ws_hold", "fanout", "seed",
             "search", "lists")

# Figures every results.json carries (the smoke test checks them).
FIGURES = ("healthz_rps", "post_get", "views", "likes", "comments", "io_drain", "ws_hold", "fanout",
           "latency", "seed", "search", "lists", "lab")


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class BenchError(RuntimeError):
    pass


def ratio(a, b):
    return None if a is None or not b else round(a / b, 3)


# --- the machine: /proc and limits -------------------------------------------------------------

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
