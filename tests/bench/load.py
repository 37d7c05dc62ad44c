"""The load generators and what they measure: wrk (HTTP; its Lua scripts end with a hook
printing one BENCHJSON line) with the CPU seconds the stack spent meanwhile, several wrk runs
combined into one figure, and sio_load.py (Socket.IO websockets) started as a child process."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time

from bench.common import BENCH, BenchError

# The percentiles of `pcts_ms`: a latency distribution per request kind (docs/img/).
PCT_GRID = (1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 97.5, 98, 99, 99.5,
            99.9, 99.99)
# wrk: every script ends with this done() hook, which prints one machine-readable line.
LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  local grid = {PCT_GRID}
  local pcts = {}
  for _, p in ipairs(grid) do
    pcts[#pcts + 1] = string.format('[%g, %d]', p, latency:percentile(p))
  end
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "non_2xx": %d, "timeouts": %d, "p50_us": %d, "p75_us": %d, ' ..
    '"p90_us": %d, "p95_us": %d, "p99_us": %d, "p999_us": %d, "min_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "pcts_us": [%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency:percentile(99.9), latency.min,
    latency.max, latency.mean, table.concat(pcts, ', ')))
end
""".replace("PCT_GRID", ", ".join(str(p) for p in PCT_GRID))
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
    out["pcts_ms"] = combine_pcts(runs)
    return out


def combine_pcts(runs: list[dict]) -> list | None:
    """The latency distribution of several wrk runs: per percentile, the mean of the runs'
    values weighted by their requests (wrk's histograms are not merged: an approximation that
    is exact for one run and close for rounds of the same load)."""
    runs = [r for r in runs if r.get("pcts_ms") and r["requests"]]
    if not runs:
        return None
    req = sum(r["requests"] for r in runs)
    return [[p, round(sum(r["pcts_ms"][i][1] * r["requests"] for r in runs) / req, 3)]
            for i, (p, _) in enumerate(runs[0]["pcts_ms"])]


def lua_list(values) -> str:
    return "{" + ",".join(json.dumps(v) if isinstance(v, str) else str(v) for v in values) + "}"


def lua_many_posts(post_ids: list[int], seed: int) -> str:
    return (f"local ids = {lua_list(post_ids)}\nlocal n = #ids\n" + LUA_SEED % seed +
            'function request()\n  return wrk.format("GET", "/api/posts/" .. '
            'ids[math.random(n)])\nend\n')


def wrk(stack, name: str, script: str, path: str, secs: float, conns: int,
        url: str | None = None, cpu_seconds=None) -> dict:
    """One wrk run against the stack (the Lua script, if any, in DATA/<name>.lua): its summary
    with rates in req/s, latencies in ms (and their distribution, `pcts_ms`: [[percentile, ms],
    ...]), the command, the load and the CPU seconds spent. `url` and `cpu_seconds` (a function
    like Stack.cpu_seconds) point it at another server than the stack's web instance (the seed's
    design, seed_compare.py)."""
    lua = stack.data / f"{name}.lua"
    lua.write_text(script + LUA_DONE)
    cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{max(1, round(secs))}s",
           "--timeout", "10s", "-s", str(lua), (url or stack.url) + path]
    cpu_seconds = cpu_seconds or stack.cpu_seconds
    cpu0 = cpu_seconds()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60,
                          stdin=subprocess.DEVNULL)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout[-1500:]}"
                         f"{done.stderr[-1500:]}")
    r = json.loads(line[len("BENCHJSON "):])
    r["seconds"] = r["duration_us"] / 1e6
    r["rps"] = round(r["requests"] / r["seconds"], 1)
    for k in ("p50", "p75", "p90", "p95", "p99", "p999", "min", "max"):
        r[f"{k}_ms"] = round(r.pop(f"{k}_us") / 1000.0, 2)
    r["pcts_ms"] = [[p, round(us / 1000.0, 3)] for p, us in r.pop("pcts_us")]
    r["command"] = shlex.join(cmd)
    r["load1"] = os.getloadavg()[0]
    if cpu0:
        cpu1 = cpu_seconds()
        r["cpu_s"] = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0}
    stack.check_alive()
    return r


def sio(stack, mode: str, *extra: str, timeout: float):
    """Start sio_load.py MODE (hold, fanout) against the stack: (its process, its JSON events as
    they come, until `timeout`, the command)."""
    cmd = [sys.executable, str(BENCH / "sio_load.py"), mode, "--url", stack.url, *extra]
    logf = stack.logs / f"sio_{mode}.log"
    errf = open(logf, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True,
                            env=stack.env, stdin=subprocess.DEVNULL, start_new_session=True)
    stack.procs.running[f"sio_{mode}"] = (proc, logf)
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
