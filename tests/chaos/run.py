"""`make chaos`: fault scenarios against the lab under a steady mixed load (docs/reliability.md).

    .venv/bin/python tests/chaos/run.py [--only NAME[,NAME...]] [--list]

Each scenario starts a load (tests/chaos/load.py) on fresh targets, injects its fault, lets
the system settle, then compares what clients were told succeeded (2xx) with what PostgreSQL
holds (psql on the postgresql host) and what the API counts. Prints a table and writes
.cache/chaos/results.json. Exit status 1 when a scenario breaks a guarantee.

Traffic goes only to the lab's hosts (LAB_ID=N: 10.77.N.0/24). Every wait has a deadline.
"""
from __future__ import annotations

import argparse
import configparser
import datetime
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Load, Subscribers, User, make_targets, session  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LAB_ID = os.environ.get("LAB_ID", "0")
SUFFIX = "" if LAB_ID == "0" else LAB_ID
INVENTORY = REPO / f"ansible/inventories/lab{SUFFIX}/hosts.ini"
SSH_KEY = REPO / ".cache/lab/ssh/id_ed25519"
LAB_SH = REPO / "tests/lab/lab.sh"
RESULTS = REPO / ".cache/chaos/results.json"
SSH_OPTS = ["-i", str(SSH_KEY), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR"]

USERS = 24
LOAD_THREADS = 6
STEADY = 8  # s of load before each fault
SETTLE_TIMEOUT = 150  # s for counts to reach the truth after the load stops
ALLOWED_OUTAGE = {"503", "timeout", "conn-error", "502", "504"}


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ the lab
def read_inventory() -> dict:
    """host -> address, and group -> hosts, from the lab's hosts.ini."""
    cp = configparser.ConfigParser(allow_no_value=True, delimiters=(" ",), strict=False)
    cp.optionxform = str
    cp.read(INVENTORY)
    addresses, groups = {}, {}
    for group in cp.sections():
        groups[group] = []
        for key, value in cp.items(group):
            groups[group].append(key)
            if value and "ansible_host=" in value:
                addresses[key] = value.split("ansible_host=")[1].split()[0]
    return {"addresses": addresses, "groups": groups}


INV = read_inventory() if INVENTORY.exists() else {"addresses": {}, "groups": {}}
ADDR = INV["addresses"]
LB = f"https://{ADDR.get('lb1', '10.77.0.10')}"
WEB = INV["groups"].get("web", [])
DATA = (INV["groups"].get("postgresql") or ["data1"])[0]


def ssh(host: str, cmd: str, timeout: float = 60, check: bool = True) -> str:
    r = subprocess.run(["ssh", *SSH_OPTS, f"root@{ADDR[host]}", cmd], capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{host}: {cmd}: rc={r.returncode} {r.stderr.strip()[:300]}")
    return r.stdout


def psql(query: str) -> list[list[str]]:
    out = ssh(DATA, "runuser -u postgres -- psql -d synspirit -AtF '|' -c " + shlex.quote(query))
    return [line.split("|") for line in out.splitlines() if line]


def redis_cli(*args: str) -> str:
    password = (INVENTORY.parent / "secrets/redis_password.txt").read_text().split()[0]
    cmd = f"REDISCLI_AUTH={shlex.quote(password)} redis-cli --no-auth-warning " + " ".join(
        shlex.quote(a) for a in args)
    return ssh(DATA, cmd).strip()


def wait_unacked_gone(tags: set[str], timeout: float) -> set[str]:
    """Wait until none of tags is in Redis' `unacked` hash; return those still there."""
    deadline = time.monotonic() + timeout
    left = set(tags)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left &= set(redis_cli("HKEYS", "unacked").split())
    return left


def unacked_summary(tags: set[str]) -> str:
    """Task name, queue and age of some `unacked` entries (to explain a failed redelivery)."""
    out = []
    for tag in sorted(tags)[:5]:
        raw = redis_cli("HGET", "unacked", tag)
        score = redis_cli("ZSCORE", "unacked_index", tag)
        try:
            message, _, routing_key = json.loads(raw)
            task = message.get("headers", {}).get("task")
        except (ValueError, TypeError, AttributeError):
            task, routing_key = "?", "?"
        age = f"{time.time() - float(score):.0f} s" if score else "?"
        out.append(f"{task} on {routing_key}, taken {age} ago")
    return "; ".join(out)


def lab_sh(*args: str, timeout: float = 300) -> None:
    subprocess.run([str(LAB_SH), *args], check=True, timeout=timeout,
                   env={**os.environ, "LAB_ID": LAB_ID})


def unit_pid(host: str, unit: str) -> int:
    return int(ssh(host, f"systemctl show -P MainPID {unit}").strip())


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except Exception:  # noqa: BLE001 - a host may be away while we wait
            result = None
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


# Run on a web host: GET PATH from each of its gunicorn instances; one "PORT STATUS" line each.
_INSTANCES = r"""
import subprocess, sys, urllib.error, urllib.request
units = subprocess.run(["systemctl", "list-units", "--plain", "--no-legend", "synspirit-web@*"],
                       capture_output=True, text=True).stdout.split()
web = "synspirit-web@"
for port in sorted(u[len(web):-len(".service")] for u in units if u.startswith(web)):
    try:
        with urllib.request.urlopen(f"http://{sys.argv[1]}:{port}{sys.argv[2]}", timeout=3) as r:
            body = r.read().decode()
            print(port, r.status, len(body))
            if sys.argv[2] == "/metrics":
                print(body)
    except urllib.error.HTTPError as e:
        print(port, e.code, 0)
    except Exception:
        print(port, "down", 0)
"""


def instances(host: str, path: str) -> str:
    return ssh(host, f"python3 -c {shlex.quote(_INSTANCES)} {ADDR[host]} {path}", timeout=30, check=False)


def instances_ready() -> bool:
    """Every web instance on every web host answers /readyz 200 (PostgreSQL and Redis reachable)."""
    for host in WEB:
        codes = [line.split()[1] for line in instances(host, "/readyz").splitlines() if line.strip()]
        if not codes or any(c != "200" for c in codes):
            return False
    return True


def units_active(host: str) -> bool:
    out = ssh(host, "systemctl list-units --plain --no-legend --all 'synspirit-*' | awk '{print $1, $3, $4}'",
              timeout=15)
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return bool(rows) and all(r[1] == "active" and r[2] == "running" for r in rows)


# ------------------------------------------------------------------ truth in the database
def db_reactions(load: Load) -> set[tuple]:
    ids = {k: [t for kind, t in load.targets if kind == k] for k in ("post", "article")}
    users = ",".join(str(u.id) for u in load.users)
    rows = psql(
        "SELECT user_id, action, CASE WHEN post_id IS NOT NULL THEN 'post' ELSE 'article' END, "
        "COALESCE(post_id, article_id) FROM reactions "
        f"WHERE user_id IN ({users}) AND (post_id IN ({','.join(map(str, ids['post'])) or 0}) "
        f"OR article_id IN ({','.join(map(str, ids['article'])) or 0}))")
    return {(int(u), a, k, int(t)) for u, a, k, t in rows}


def db_comments(load: Load) -> dict[tuple[str, int], set[int]]:
    found: dict[tuple[str, int], set[int]] = {t: set() for t in load.targets}
    for kind, tid in load.targets:
        table, col = (("post_comments", "post_id") if kind == "post"
                      else ("article_comments", "article_id"))
        found[(kind, tid)] = {int(r[0]) for r in psql(f"SELECT id FROM {table} WHERE {col} = {tid}")}
    return found


def db_views(load: Load) -> dict[tuple[str, int], int]:
    views = {}
    for kind, tid in load.targets:
        table = "posts" if kind == "post" else "articles"
        views[(kind, tid)] = int(psql(f"SELECT views_count FROM {table} WHERE id = {tid}")[0][0])
    return views


def uncounted_views(since: float) -> dict[tuple[str, int], int]:
    """Views the web instances served but logged as not counted (the view buffer, Redis, was
    unreachable: reading stays available, that view is not counted; content/routes.py)."""
    out: dict[tuple[str, int], int] = {}
    for host in WEB:
        text = ssh(host, f"journalctl -u 'synspirit-web@*' --since @{int(since)} --no-pager -o cat "
                         "| grep -oE 'view of (post|article) [0-9]+ not counted' || true",
                   timeout=30, check=False)
        for line in text.splitlines():
            _, _, kind, tid, *_ = line.split()
            out[(kind, int(tid))] = out.get((kind, int(tid)), 0) + 1
    return out


def api_counts(load: Load) -> dict[tuple[str, int], dict]:
    """Counts as the API lists them (lists do not count a view)."""
    s = session()
    out = {}
    for kind in ("post", "article"):
        r = s.get(f"{LB}/api/{kind}s", params={"per_page": 100}, timeout=15)
        r.raise_for_status()
        for item in r.json()["items"]:
            if (kind, item["id"]) in load.targets:
                out[(kind, item["id"])] = item["counts"]
    return out


def expected_counts(load: Load, comments: dict) -> dict[tuple[str, int], dict]:
    exp = {t: {"likes": 0, "collects": 0, "shares": 0, "comments": len(comments[t])}
           for t in load.targets}
    for (_, action, kind, tid) in load.expected_rows():
        exp[(kind, tid)][action + "s"] += 1
    return exp


def verify(load: Load, started: float, view_window: int = 0, since: float = 0.0) -> dict:
    """Compare acknowledged actions with the database, after the counts settle."""
    uncounted = uncounted_views(since)
    rows = db_reactions(load)
    want, absent = load.expected_rows(), load.expected_absent()
    missing = want - rows
    resurrected = absent & rows
    comments = db_comments(load)
    lost_comments = sum(len(ids - comments[t]) for t, ids in load.comments.items())
    extra_comments = sum(len(comments[t]) - len(load.comments[t] & comments[t]) for t in load.targets)
    exp = expected_counts(load, comments)
    exp_views = {t: load.views[t] for t in load.targets}

    def consistent():
        got = api_counts(load)
        views = db_views(load)
        bad = {f"{k}/{t}": {"api": got.get((k, t)), "rows": exp[(k, t)]}
               for (k, t) in load.targets
               if {c: got.get((k, t), {}).get(c) for c in exp[(k, t)]} != exp[(k, t)]}
        views_ok = all(views[t] >= exp_views[t] - uncounted.get(t, 0) for t in load.targets)
        return (not bad and views_ok), bad, views

    ok, bad, views = False, {}, {}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            ok, bad, views = consistent()
        except Exception as e:  # noqa: BLE001 - the API may still be recovering
            bad = {"error": str(e)}
        if ok:
            break
        time.sleep(1)
    settled = time.monotonic() - started
    lost_views = sum(max(0, exp_views[t] - views.get(t, 0)) for t in load.targets)
    served_uncounted = sum(uncounted.get(t, 0) for t in load.targets)
    acked = load.acknowledged_writes()
    lost = len(missing) + lost_comments
    return {
        "acknowledged": acked,
        "counted": acked - lost,
        "lost": lost,
        "lost_detail": {"reactions_missing": len(missing), "reactions_undone_but_present": len(resurrected),
                        "comments_missing": lost_comments},
        "comments_unknown_outcome": load.comment_unknown,
        "comments_extra_in_db": extra_comments,
        "unknown_outcome_keys": len(load.unknown),
        "views_acknowledged": sum(exp_views.values()),
        "views_counted": sum(min(views.get(t, 0), exp_views[t]) for t in load.targets),
        "views_lost": lost_views,
        "views_served_uncounted": served_uncounted,
        "views_lost_after_acknowledged_count": max(0, lost_views - served_uncounted),
        "views_window": view_window,
        "counts_settled": ok,
        "counts_mismatch": bad if not ok else {},
        "settled_after_s": round(settled, 1),
        "requests": load.stats.requests,
        "failed": dict(load.stats.failed),
        "failed_by_kind": dict(load.stats.failed_by_kind),
        "failures": load.stats.failures[:200],
        "stale_connection_retries": load.stats.stale_connection_retries[:200],
    }


# ------------------------------------------------------------------ one scenario
class Run:
    """Users, fresh targets, load and subscribers for one scenario."""

    users: list[User] = []

    def __init__(self, name: str, subscribers: int = 4):
        self.name = name
        if not Run.users:
            log(f"registering {USERS} users")
            Run.users = [User(LB).register() for _ in range(USERS)]
        self.targets = make_targets(Run.users[0])
        self.load = Load(LB, Run.users, self.targets, threads=LOAD_THREADS)
        self.subs = Subscribers(LB, self.targets, n=subscribers)
        self.t0 = time.monotonic()
        self.wall0 = time.time() - 2
        self.notes: list[str] = []
        self.checks: dict[str, bool] = {}

    def __enter__(self):
        log(f"{self.name}: load on {self.targets}")
        self.subs.start()
        self.load.start()
        time.sleep(STEADY)
        return self

    def __exit__(self, *exc):
        self.load.stop_event.set()

    def finish(self, recovery_s: float | None, allowed: set[str], view_window: int = 0,
               max_gap: float | None = None) -> dict:
        self.load.stop()
        time.sleep(1)
        result = verify(self.load, time.monotonic(), view_window, since=self.wall0)
        gaps = sorted(self.subs.gaps)
        still_down = self.subs.still_down()
        self.subs.stop()
        failed = result["failed"]
        bad_status = {s: n for s, n in failed.items() if s not in allowed}
        checks = {
            "nothing acknowledged lost": result["lost"] == 0
                                         and result["lost_detail"]["reactions_undone_but_present"] == 0,
            "counts equal the rows": result["counts_settled"],
            "no 500": not any(s.startswith("5") and s not in ("502", "503", "504") for s in failed),
            "only allowed failures": not bad_status,
            "views lost within window": result["views_lost_after_acknowledged_count"] <= view_window,
            "subscribers back": not still_down,
            **self.checks,
        }
        if max_gap is not None:
            checks[f"subscribers resubscribed within {max_gap:g} s"] = all(g <= max_gap for g in gaps)
        result.update({
            "scenario": self.name,
            "recovery_s": None if recovery_s is None else round(recovery_s, 1),
            "socketio": {"clients": self.subs.n, "disconnects": self.subs.disconnects,
                         "max_resubscribe_gap_s": round(gaps[-1], 2) if gaps else None,
                         "events": self.subs.events, "still_down": len(still_down)},
            "checks": checks,
            "passed": all(checks.values()),
            "notes": self.notes,
            "duration_s": round(time.monotonic() - self.t0, 1),
        })
        log(f"{self.name}: {'PASS' if result['passed'] else 'FAIL'} "
            f"{ {k: v for k, v in checks.items() if not v} or ''}")
        return result


def first_success_after(load: Load, t: float, timeout: float) -> float | None:
    """Seconds from t until the load gets its next 2xx write."""
    start = load.stats.requests
    deadline = time.monotonic() + timeout
    base = load.acknowledged_writes()
    while time.monotonic() < deadline:
        if load.acknowledged_writes() > base:
            return time.monotonic() - t
        time.sleep(0.05)
    del start
    return None


# ------------------------------------------------------------------ scenarios
def article_burst(user: User, n: int) -> list[int]:
    """n maximum-size Markdown articles: each render keeps a cpu worker busy."""
    block = ("## Section\n\nSome *emphasis*, **strong**, `code`, a [link](https://example.org/x) "
             "and ~~strike~~.\n\n> quoted\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n")
    content = (block * (20000 // len(block) + 1))[:19990]
    ids = []
    for i in range(n):
        r = user.request("POST", "/api/articles", json={"title": f"Long {i}", "content": content})
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids


def articles_rendered(ids: list[int]) -> tuple[int, int]:
    """(rendered, half-written) among ids: rendered = html, excerpt and minutes all set."""
    rows = psql("SELECT (content_html IS NOT NULL)::int, (excerpt IS NOT NULL)::int, "
                f"(reading_minutes IS NOT NULL)::int FROM articles WHERE id IN ({','.join(map(str, ids))})")
    done = sum(1 for r in rows if r == ["1", "1", "1"])
    half = sum(1 for r in rows if len(set(r)) > 1)
    return done, half


def s_kill_workers() -> list[dict]:
    results = []
    for profile in ("io", "cpu"):
        name = f"kill -9 worker@{profile}"
        with Run(name) as run:
            host = WEB[0]
            unit = f"synspirit-worker@{profile}.service"
            burst = article_burst(Run.users[1], 10) if profile == "cpu" else []
            old = unit_pid(host, unit)
            t_kill = time.monotonic()
            ssh(host, f"kill -9 {old}")
            # What the dead worker held (with what live workers had in flight at that moment):
            # it stays in Redis' `unacked` hash until it is older than the visibility timeout,
            # then a live worker's sweep hands it back to its queue (celery_setup.py).
            held = set(redis_cli("HKEYS", "unacked").split())
            log(f"{name}: killed PID {old} on {host}; {len(held)} tasks unacknowledged")
            back = wait_for(lambda h=host, u=unit, o=old: unit_pid(h, u) not in (0, o)
                            and units_active(h), 60)
            t_back = time.monotonic() - t_kill
            run.notes.append(f"worker restarted by systemd after {t_back:.1f} s" if back
                             else "worker NOT back")
            run.checks["worker restarted by systemd"] = bool(back)
            time.sleep(5)
            run.load.stop()
            left = wait_unacked_gone(held, 120)
            drained = not left
            recovery = time.monotonic() - t_kill
            run.notes.append(f"{len(held)} unacknowledged at the kill, "
                             + (f"all handed back or done after {recovery:.1f} s" if drained
                                else f"{len(left)} still unacknowledged after {recovery:.1f} s: "
                                     + unacked_summary(left)))
            run.checks["unacked tasks redelivered"] = bool(drained)
            if burst:
                done = wait_for(lambda b=burst: articles_rendered(b)[0] == len(b), 120, 1)
                run.checks["every article rendered"] = bool(done)
                run.checks["no half-written article"] = articles_rendered(burst)[1] == 0
            results.append(run.finish(recovery, allowed=set()))
    return results


def s_redis_restart() -> list[dict]:
    with Run("restart Redis") as run:
        fsync = ssh(DATA, "grep -E '^appendfsync' /etc/redis/redis.conf").split()[-1]
        run.notes.append(f"appendfsync {fsync}")
        t = time.monotonic()
        ssh(DATA, "systemctl restart redis-server")
        t_end = time.monotonic()
        run.notes.append(f"restart took {t_end - t:.1f} s")
        back = first_success_after(run.load, t_end, 60)
        time.sleep(10)
        ready = wait_for(instances_ready, 60, 1)
        run.checks["every web instance ready again"] = bool(ready)
        run.checks["worker units active"] = all(units_active(h) for h in WEB)
        return [run.finish(back, allowed={"503"}, view_window=0)]


def s_postgres_restart() -> list[dict]:
    with Run("restart PostgreSQL") as run:
        ssh(DATA, "systemctl stop postgresql")
        t_down = time.monotonic()
        time.sleep(6)
        down_failures = dict(run.load.stats.failed)
        ssh(DATA, "systemctl start postgresql")
        t_up = time.monotonic()
        run.notes.append(f"down {t_up - t_down:.1f} s; failures while down {down_failures}")
        back = first_success_after(run.load, t_up, 60)
        run.checks["serving within 5 s of PostgreSQL's return"] = back is not None and back <= 5
        time.sleep(5)
        return [run.finish(back, allowed={"503"})]


def s_rolling_deploy() -> list[dict]:
    with Run("rolling deploy") as run:
        release = f"chaos-{int(time.time())}"
        env = {**os.environ, "PATH": f"{REPO}/.venv/bin:{os.environ['PATH']}",
               "ANSIBLE_FORCE_COLOR": "0"}
        cmd = ["ansible-playbook", "-i", str(INVENTORY), "site.yml",
               "-e", json.dumps({"synspirit_extra_env": {"SYNSPIRIT_RELEASE": release}})]
        log(f"rolling deploy: {' '.join(cmd)}")
        t = time.monotonic()
        r = subprocess.run(cmd, cwd=REPO / "ansible", env=env, capture_output=True, text=True,
                           timeout=1800)
        took = time.monotonic() - t
        logfile = RESULTS.parent / "rolling-deploy.log"
        logfile.write_text(r.stdout + r.stderr)
        run.checks["playbook succeeded"] = r.returncode == 0
        restarted = r.stdout.count("RUNNING HANDLER [synspirit : Restart")
        run.notes.append(f"SYNSPIRIT_RELEASE={release}; playbook {took:.0f} s (log {logfile}); "
                         f"restart handler ran {restarted}x")
        release_on = [ssh(h, "grep -c SYNSPIRIT_RELEASE=" + release + " /etc/synspirit/synspirit.env",
                          check=False).strip() == "1" for h in WEB]
        run.checks["new version on every web host"] = all(release_on)
        time.sleep(5)
        return [run.finish(took, allowed=set(), max_gap=5)]


def s_poweroff_web() -> list[dict]:
    host = WEB[-1]
    with Run(f"power-off + boot {host}") as run:
        lab_sh("poweroff", host)
        t_off = time.monotonic()
        time.sleep(15)
        during = dict(run.load.stats.failed)
        lab_sh("boot", host)
        t_boot = time.monotonic()
        back = wait_for(lambda: units_active(host) and
                        ssh(host, "systemctl is-system-running", check=False).strip() == "running", 120, 1)
        recovery = time.monotonic() - t_boot
        run.checks[f"every service back on {host} by itself"] = bool(back)
        run.notes.append(f"off {t_boot - t_off:.0f} s; failures while off {during}; "
                         f"units active {recovery:.1f} s after boot")
        # nginx marks a server failed for fail_timeout (10 s) and then tries it again
        routed = wait_for(lambda: served_by(host), 30, 1)
        run.checks[f"nginx routes to {host} again"] = bool(routed)
        return [run.finish(recovery, allowed=set())]


def served_by(host: str) -> bool:
    """The host's instances have answered API requests since they started (their /metrics)."""
    total = 0.0
    for line in instances(host, "/metrics").splitlines():
        if line.startswith("synspirit_http_requests_total{") and 'endpoint="/api/' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total > 0


def s_network_cut() -> list[dict]:
    veth = f"vb-{'l' + LAB_ID if LAB_ID != '0' else ''}{DATA}"
    with Run("network cut web<->data1 10 s") as run:
        readyz: list[tuple[float, int]] = []
        stop = threading.Event()

        def probe():
            s = session()
            while not stop.is_set():
                try:
                    code = s.get(f"{LB}/readyz", timeout=15).status_code
                except Exception:  # noqa: BLE001
                    code = 0
                readyz.append((time.monotonic(), code))
                time.sleep(0.5)

        th = threading.Thread(target=probe, daemon=True)
        th.start()
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        t_cut = time.monotonic()
        try:
            time.sleep(10)
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        t_up = time.monotonic()
        back = wait_for(lambda: any(t > t_up and c == 200 for t, c in readyz), 60, 0.2)
        recovery = (min(t for t, c in readyz if t > t_up and c == 200) - t_up) if back else None
        stop.set()
        th.join(10)
        run.checks["/readyz went 503 during the cut"] = any(t_cut < t < t_up and c == 503 for t, c in readyz)
        run.checks["/readyz 200 again"] = bool(back)
        run.notes.append(f"link {veth} down {t_up - t_cut:.1f} s")
        ready = wait_for(instances_ready, 60, 1)
        run.checks["every web instance ready again"] = bool(ready)
        return [run.finish(recovery, allowed=ALLOWED_OUTAGE)]


def s_stop_cpu_worker() -> list[dict]:
    with Run("systemctl restart worker@cpu mid-render", subscribers=2) as run:
        burst = article_burst(Run.users[2], 40)
        time.sleep(0.5)
        t = time.monotonic()
        # Both hosts' cpu workers at once, so the queue has no other consumer meanwhile.
        threads = [threading.Thread(target=ssh, args=(h, "systemctl restart synspirit-worker@cpu.service"),
                                    kwargs={"timeout": 120}) for h in WEB]
        for th in threads:
            th.start()
        for th in threads:
            th.join(130)
        stopped = time.monotonic() - t
        logs = "".join(ssh(h, "journalctl -u synspirit-worker@cpu --since '-3min' --no-pager -o cat | "
                              "grep -iE 'sigkill|timed out|Killing|WorkerLost' || true") for h in WEB)
        run.checks["warm shutdown (no SIGKILL, no lost worker)"] = not logs.strip()
        run.notes.append(f"stop+start of both cpu workers took {stopped:.1f} s; "
                         f"journal: {logs.strip()[:200] or 'clean'}")
        done = wait_for(lambda: articles_rendered(burst)[0] == len(burst), 150, 1)
        recovery = time.monotonic() - t
        rendered, half = articles_rendered(burst)
        run.checks[f"all {len(burst)} long articles rendered"] = bool(done)
        run.checks["no half-written article"] = half == 0
        run.notes.append(f"{rendered}/{len(burst)} rendered after {recovery:.1f} s")
        return [run.finish(recovery, allowed=set())]


SCENARIOS = {
    "kill": s_kill_workers,
    "redis": s_redis_restart,
    "postgres": s_postgres_restart,
    "deploy": s_rolling_deploy,
    "poweroff": s_poweroff_web,
    "netcut": s_network_cut,
    "stop": s_stop_cpu_worker,
}


# ------------------------------------------------------------------ report
def table(results: list[dict]) -> str:
    head = ["scenario", "acked", "counted", "lost", "views acked/lost", "failed requests",
            "recovery s", "resub gap s", "result"]
    rows = [head]
    for r in results:
        failed = ", ".join(f"{k}:{v}" for k, v in sorted(r["failed"].items())) or "0"
        if n := len(r.get("stale_connection_retries") or ()):
            failed += f" ({n} stale keep-alive resent)"
        rows.append([r["scenario"], str(r["acknowledged"]), str(r["counted"]), str(r["lost"]),
                     f"{r['views_acknowledged']}/{r['views_lost']}"
                     + (f" ({n} uncounted)" if (n := r.get("views_served_uncounted")) else ""),
                     failed,
                     "-" if r["recovery_s"] is None else str(r["recovery_s"]),
                     str(r["socketio"]["max_resubscribe_gap_s"] or "-"),
                     "PASS" if r["passed"] else
                     "FAIL: " + "; ".join(k for k, v in r["checks"].items() if not v)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated scenario names: " + ",".join(SCENARIOS))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if not INVENTORY.exists():
        print(f"no lab inventory at {INVENTORY}: run `LAB_ID={LAB_ID} make lab` first", file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: list[dict] = []

    def save() -> dict:
        doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": "make chaos " + " ".join(sys.argv[1:]), "lab_id": LAB_ID,
               "load": {"users": USERS, "threads": LOAD_THREADS, "socketio_clients": 4,
                        "mix": "30% like/unlike, 15% collect/uncollect, 10% share, 10% comment, "
                               "35% view, on 3 posts + 1 article per scenario"},
               "total_s": round(time.monotonic() - t0, 1), "results": results}
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")  # after each scenario
        return doc

    for name in names:
        try:
            results += SCENARIOS[name]()
        except Exception as e:  # noqa: BLE001 - record and go on with the next scenario
            log(f"{name}: ERROR {type(e).__name__}: {e}")
            results.append({"scenario": name, "error": f"{type(e).__name__}: {e}", "passed": False,
                            "acknowledged": 0, "counted": 0, "lost": 0, "views_acknowledged": 0,
                            "views_lost": 0, "failed": {}, "recovery_s": None,
                            "socketio": {"max_resubscribe_gap_s": None}, "checks": {"ran": False}})
        save()
    total = save()["total_s"]
    print()
    print(table(results))
    print(f"\n{len(results)} scenario runs in {total:.0f} s; results: {RESULTS}")
    passed = sum(1 for r in results if r["passed"])
    print(f"chaos: {passed} passed, {len(results) - passed} failed")  # CI reads this line
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
