"""--lab: against a running lab (tests/lab/lab.sh), GET /api/posts/<id> through nginx vs
straight to the same web instances, wrk on lb1 both ways, recorded in the lab's timings.json."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.common import LAB_TIMINGS, PROFILES, BenchError, cpu_model, log, proc_cpu, ratio
from bench.load import LUA_DONE
from testkit import lab


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


def lab_host_processes() -> dict[str, list[int]]:
    """Every process of each running host of the lab LAB_ID, by host name: its systemd-nspawn
    process and all it started (systemd, nginx, gunicorn, sshd, ...), read from /proc."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
    kids: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        kids.setdefault(pp, []).append(pid)
    prefix = "" if lab.LAB_ID == "0" else f"l{lab.LAB_ID}"
    hosts: dict[str, list[int]] = {}
    for pid in parent:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if not argv[0].endswith(b"systemd-nspawn"):
                continue
            machine = next((a.decode().split("=", 1)[1] for a in argv if a.startswith(b"--machine=")), "")
            if not machine.startswith(prefix):
                continue
            tree, todo = [], [pid]
            while todo:
                p = todo.pop()
                tree.append(p)
                todo += kids.get(p, [])
            hosts[machine[len(prefix):]] = tree
    return hosts


def lab_host_cpu() -> dict[str, float]:
    """CPU seconds used so far by each lab host: user + system time of its processes and of
    the children they reaped (a process that exits during a window is then counted by its
    parent), so a difference of two readings is the host's CPU over the window."""
    return {host: round(sum(proc_cpu(pid, reaped=True) for pid in pids), 2)
            for host, pids in lab_host_processes().items()}


def pin_lab_hosts(spec: dict[str, set[int]]) -> int:
    """Sets the CPU affinity of every thread of the named lab hosts (their systemd-nspawn
    process and all it started: systemd, nginx, gunicorn, sshd, ...; new processes inherit it).
    The hosts share the controller's cores; pinning lb1 to one core and the web hosts to the
    others models the production layout, where the load balancer has its own machine."""
    pinned = 0
    for host, pids in lab_host_processes().items():
        if host not in spec:
            continue
        for p in pids:
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
