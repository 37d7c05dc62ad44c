"""--lab-mixed: the whole site under a community's request mix, through nginx on a running lab
(issue 19, item 3; docs/performance.md "The whole site under a mix").

Against the floating address of lab LAB_ID, from the controller:
 1. seeds users, hot and cold posts, and one probe post through the API;
 2. opens SUBSCRIBERS Socket.IO websockets through nginx (sio_load.py fanout --lab), each
    subscribed to the probe post and to one hot post;
 3. finds the rate that saturates the site: a closed loop of the mix (mixed_load.py);
 4. after 10 s for the backlog to drain, runs the mix open-loop (Poisson arrivals) at 70 % of
    that rate, the first 10 s as warm-up: throughput, p50/p99 per request kind, while a probe
    user likes the probe post once a second and every subscriber's `counts` event is timed
    (fan-out delay); each lab host's CPU is read from /proc before and after, less what it
    burns idle (measured first, 10 s with the websockets held), so the CPU per request is
    known whatever else the machine does;
 5. the write path on the HA lab (issue 19, item 1's "measure again"): /healthz, likes and
    comments alone in closed loops, web CPU per request of each.
Writes everything to --out (lab-mixed-results.json) and prints a summary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.common import BENCH, BenchError, cpu_model, log, ratio
from bench.lab_nginx import lab_host_cpu, lab_inventory

# What a community's traffic is made of (weights, percent). Reads dominate: most visitors read
# a few hot posts (the front page's) and some old ones (search, links); one request in ten is
# a write; a login is rare but costs an Argon2id hash (64 MiB, t=3).
MIX = {"hot": 50, "cold": 20, "front": 10, "like": 12, "comment": 5, "login": 1, "healthz": 2}
PASSWORD = "mixed-bench-password"


def seed(s, url: str, users: int, probes: int, hot: int, cold: int) -> dict:
    """Users (half of them authors), posts and the probe post, through the API."""
    tag = uuid.uuid4().hex[:6]
    people = []
    for i in range(users + probes):
        name = f"mix{tag}{i}"
        r = s.post(f"{url}/api/auth/register", json={"username": name, "password": PASSWORD},
                   timeout=30)
        if r.status_code != 201:
            raise BenchError(f"register {name}: {r.status_code} {r.text[:200]}")
        people.append([name, PASSWORD, r.json()["token"]])
    ids = []
    for i in range(hot + cold + 1):
        token = people[i % max(1, users // 2)][2]
        r = s.post(f"{url}/api/posts", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                   json={"title": f"Mixed workload post {i}",
                         "content": "A post of the mixed workload, about as long as an answer. " * 12})
        if r.status_code != 201:
            raise BenchError(f"post {i}: {r.status_code} {r.text[:200]}")
        ids.append(r.json()["id"])
    return {"url": url, "users": people[:users], "probe_tokens": [p[2] for p in people[users:]],
            "hot": ids[:hot], "cold": ids[hot:hot + cold], "probe": ids[-1], "mix": MIX}


def mixed(spec_file: str, *args: str, timeout: float) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / "mixed_load.py"), "--spec", spec_file, *args],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"mixed_load.py {' '.join(args)}: rc={done.returncode} {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_window(fn, idle: dict | None = None):
    """fn() with each lab host's CPU seconds read before and after: (fn's result, {host: s}),
    less what the host burns idle ({host: s per s}) over the window when idle is given."""
    before, t0 = lab_host_cpu(), time.monotonic()
    res = fn()
    after, secs = lab_host_cpu(), time.monotonic() - t0
    used = {h: round(after[h] - before.get(h, 0.0) - (idle or {}).get(h, 0.0) * secs, 2) for h in after}
    return res, used


def per_request(used: dict, ok: int, web_hosts: list[str]) -> dict:
    """CPU milliseconds per answered request (idle CPU taken off): web hosts, load balancers,
    data hosts, every host."""
    groups = {"web": [h for h in used if h in web_hosts],
              "lb": [h for h in used if h.startswith("lb")],
              "data": [h for h in used if h.startswith("data")]}
    out = {g: round(1000 * sum(used[h] for h in hs) / ok, 3) if ok else None for g, hs in groups.items()}
    out["all_hosts"] = round(1000 * sum(used.values()) / ok, 3) if ok else None
    return out


def run_mixed(args) -> dict:
    import requests
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the lab's own CA
    inventory = lab_inventory()
    web_hosts = inventory["groups"].get("web", [])
    lb1 = inventory["hostvars"].get("lb1", {})
    addr = lb1.get("keepalived_floating_address") or inventory["addresses"]["lb1"]
    url = f"https://{addr}"
    quick = args.quick
    n_subs = 50 if quick else args.subscribers
    sat_secs, open_secs, floor_secs = (3, 5, 2) if quick else (20, 40, 10)
    s = requests.Session()
    s.verify = False
    s.trust_env = False  # else REQUESTS_CA_BUNDLE wins over verify (and no proxy for the lab)
    load_before = os.getloadavg()
    mix = dict(MIX)
    for item in filter(None, (args.mix or "").split(",")):
        kind, _, weight = item.partition("=")
        if kind not in MIX or not weight.isdigit():
            raise BenchError(f"--mix: {item!r} is not KIND=WEIGHT with KIND one of {', '.join(MIX)}")
        mix[kind] = int(weight)
    out: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "url": url,
                 "web_hosts": web_hosts, "mix_percent": mix, "subscribers": n_subs}
    log(f"mixed: seeding through {url} ({len(web_hosts)} web host(s))")
    spec = seed(s, url, users=10 if quick else 60, probes=open_secs + 15, hot=20,
                cold=30 if quick else 300)
    spec["mix"] = mix
    with tempfile.TemporaryDirectory(prefix="bench-mixed-") as tmp:
        spec_file = os.path.join(tmp, "spec.json")
        Path(spec_file).write_text(json.dumps(spec))
        tokens = os.path.join(tmp, "tokens")
        Path(tokens).write_text("\n".join(spec["probe_tokens"]) + "\n")
        go = os.path.join(tmp, "go")
        rounds = open_secs + 10  # a probe like a second through the open loop and its warm-up
        sio = subprocess.Popen(
            [sys.executable, str(BENCH / "sio_load.py"), "fanout", "--lab", "--url", url,
             "--n", str(n_subs), "--concurrency", "50", "--target-id", str(spec["probe"]),
             "--also-subscribe", ",".join(map(str, spec["hot"])), "--tokens", tokens,
             "--rounds", str(rounds), "--gap", "0.9", "--round-timeout", "5", "--go-file", go,
             "--open-timeout", "600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[dict] = []
        reader = threading.Thread(target=lambda: lines.extend(json.loads(x) for x in sio.stdout
                                                              if x.startswith("{")), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 600
            while not any(x.get("event") == "subscribed" for x in lines):
                if sio.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"sio_load.py: no subscriptions: {lines} {sio.stderr.read()[-800:]}")
                time.sleep(0.2)
            sub = next(x for x in lines if x.get("event") == "subscribed")
            log(f"mixed: {sub['subscribed']} of {n_subs} websockets subscribed ({sub['failed']} failed)")
            out["subscribed"] = sub
            idle_secs = 2 if quick else 10
            _, idle = cpu_window(lambda: time.sleep(idle_secs))
            idle = {h: round(v / idle_secs, 4) for h, v in idle.items()}
            out["idle_cpu_per_s"] = idle
            log(f"mixed: idle CPU (s/s, with the websockets held): {idle}")
            log(f"mixed: saturating closed loop, 64 connections, {sat_secs} s")
            sat, sat_cpu = cpu_window(lambda: mixed(spec_file, "closed", "--conns", "64", "--secs",
                                                    str(sat_secs), timeout=sat_secs + 120), idle)
            out["saturation"] = {**sat, "cpu_s": sat_cpu, "cpu_ms_per_request": per_request(
                sat_cpu, sat["answered_all"], web_hosts)}
            rate = round(0.7 * sat["rps"], 1)
            log(f"mixed: saturated at {sat['rps']} req/s (client CPU {sat['client_cpu_s']} s); "
                f"open loop at 70 %: {rate} req/s for {open_secs} s, probe likes once a second")
            time.sleep(2 if quick else 10)  # the saturation's backlog (counter tasks) drains
            Path(go).touch()
            res, used = cpu_window(lambda: mixed(spec_file, "open", "--rate", str(rate), "--secs",
                                                 str(open_secs), "--warmup", "1" if quick else "10",
                                                 timeout=open_secs + 180), idle)
            out["open"] = {**res, "cpu_s": used,
                           "cpu_ms_per_request": per_request(used, res["answered_all"], web_hosts)}
            sio.wait(timeout=120)
            reader.join(timeout=10)
            fan = next((x for x in lines if x.get("event") == "fanout"), None)
            if fan is None:
                raise BenchError(f"sio_load.py: no fan-out result: {sio.stderr.read()[-800:]}")
            fan.pop("per_round", None)
            out["fanout"] = {k: (round(v * 1000, 1) if k in ("p50", "p90", "p99", "max") and v is not None
                                 else v) for k, v in fan.items()}
        finally:
            if sio.poll() is None:
                sio.kill()
        floors = {}
        for kind in ("healthz", "like", "comment"):
            log(f"mixed: {kind} alone, closed loop, 32 connections, {floor_secs} s")
            r, used = cpu_window(lambda k=kind: mixed(spec_file, "closed", "--conns", "32", "--secs",
                                                      str(floor_secs), "--only", k,
                                                      timeout=floor_secs + 120), idle)
            floors[kind] = {"rps": r["rps"], "ok": r["ok"], "errors": r["errors"],
                            "p50_ms": r["kinds"].get(kind, {}).get("p50_ms"),
                            "p99_ms": r["kinds"].get(kind, {}).get("p99_ms"),
                            "client_cpu_s": r["client_cpu_s"],
                            "cpu_ms_per_request": per_request(used, r["answered_all"], web_hosts)}
        for kind in ("like", "comment"):
            floors[kind]["rps_ratio_to_healthz"] = ratio(floors[kind]["rps"], floors["healthz"]["rps"])
            floors[kind]["web_cpu_ratio_healthz_to_it"] = ratio(
                floors["healthz"]["cpu_ms_per_request"]["web"], floors[kind]["cpu_ms_per_request"]["web"])
        out["write_path"] = floors
    out["machine"] = {"nproc": os.cpu_count(), "cpu_model": cpu_model(),
                      "load_before": [round(x, 2) for x in load_before],
                      "load_after": [round(x, 2) for x in os.getloadavg()]}
    out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    errors = out["open"]["errors"] + out["saturation"]["errors"]
    if errors:
        samples = out["open"]["error_samples"] or out["saturation"]["error_samples"]
        log(f"mixed: {errors} failed requests: {samples}")
    return out


def summary(res: dict) -> str:
    o, sat, f = res["open"], res["saturation"], res["fanout"]
    lines = [f"mixed workload through nginx ({res['url']}, {len(res['web_hosts'])} web host(s), "
             f"{res['subscribed']['subscribed']} websockets subscribed)",
             f"  saturation: {sat['rps']} req/s (closed loop, 64 connections)",
             f"  open loop at 70 %: {o['rps']} req/s served, {o['errors']} errors, {o['dropped']} dropped",
             "  kind       count  p50 ms  p99 ms"]
    for kind, k in o["kinds"].items():
        lines.append(f"  {kind:9} {k['count']:6} {k['p50_ms']!s:>7} {k['p99_ms']!s:>7}")
    c = o["cpu_ms_per_request"]
    lines.append(f"  CPU per request (idle taken off): web {c['web']} ms, lb {c['lb']} ms, "
                 f"data {c['data']} ms, all hosts {c['all_hosts']} ms; idle: "
                 f"{round(sum(res['idle_cpu_per_s'].values()), 2)} CPU-s/s")
    lines.append(f"  fan-out to {f['subscribed']} subscribers: p50 {f['p50']} ms, p99 {f['p99']} ms, "
                 f"missing {f['missing']}")
    for kind, w in res["write_path"].items():
        lines.append(f"  {kind} alone: {w['rps']} req/s, web CPU {w['cpu_ms_per_request']['web']} ms/request"
                     + (f", rate / healthz {w['rps_ratio_to_healthz']}, web CPU healthz / it "
                        f"{w['web_cpu_ratio_healthz_to_it']}" if kind != "healthz" else ""))
    return "\n".join(lines)
