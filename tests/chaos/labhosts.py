"""The lab as the chaos scenarios see it: its inventory, commands on its hosts (SSH), psql and
redis-cli on the data hosts, tests/lab/lab.sh, and probes of the web instances.

Traffic goes only to the lab's hosts (LAB_ID=N: 10.77.N.0/24). Every wait has a deadline.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testkit.lab import INVENTORY, LAB_ID, REPO, read_inventory, ssh_options, worker_hosts  # noqa: E402
from testkit.waiting import wait_until  # noqa: E402

LAB_SH = REPO / "tests/lab/lab.sh"
RESULTS = REPO / ".cache/chaos/results.json"
SSH_OPTS = ssh_options(connect_timeout=3)


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


INV = read_inventory() if INVENTORY.exists() else {"addresses": {}, "groups": {}}
ADDR = INV["addresses"]
# The site's floating address (keepalived on lb1/lb2), from the lab's inventory variables.
LAB_VARS = (yaml.safe_load((INVENTORY.parent / "group_vars/all.yml").read_text())
            if INVENTORY.exists() else {})
FLOATING = LAB_VARS.get("keepalived_floating_address", f"10.77.{LAB_ID}.9")
LB = f"https://{FLOATING}"
WEB = INV["groups"].get("web", [])
DATA = (INV["groups"].get("postgresql") or ["data1"])[0]
BEAT = INV["groups"].get("beat", [])
WORKER_HOSTS = worker_hosts(INV)
WORKER_METRICS_PORTS = (9810, 9811)  # io, cpu: ansible/group_vars/all/deployment.yml
MEMBERS = INV["groups"].get("postgresql", [])  # the PostgreSQL cluster (Patroni)


def ssh(host: str, cmd: str, timeout: float = 60, check: bool = True) -> str:
    r = subprocess.run(["ssh", *SSH_OPTS, f"root@{ADDR[host]}", cmd], capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{host}: {cmd}: rc={r.returncode} {r.stderr.strip()[:300]}")
    return r.stdout


def cluster(exclude: set[str] = frozenset()) -> list[dict]:
    """`patronictl list` (read from etcd) on the first member that answers, as JSON rows:
    Member, Role (Leader, Sync Standby, Replica), State, TL, ..."""
    for host in MEMBERS:
        if host in exclude:
            continue
        try:
            return json.loads(ssh(host, "patronictl -c /etc/patroni/config.yml list --format json",
                                  timeout=15))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            continue
    raise RuntimeError(f"no PostgreSQL member answers patronictl: {MEMBERS}")


def primary(exclude: set[str] = frozenset()) -> str | None:
    """The member that holds Patroni's leader lock, or None."""
    return next((m["Member"] for m in cluster(exclude) if m["Role"] == "Leader"), None)


_primary_seen: list = [0.0, None]  # when, which: psql asks Patroni at most every 5 s


def psql(query: str) -> list[list[str]]:
    """Rows of `query` in the application's database on the current primary (the truth)."""
    if time.monotonic() - _primary_seen[0] > 5 or _primary_seen[1] is None:
        _primary_seen[:] = [time.monotonic(), primary() or DATA]
    out = ssh(_primary_seen[1], "cd /tmp && runuser -u postgres -- psql -d synspirit -AtF '|' -c "
              + shlex.quote(query))
    return [line.split("|") for line in out.splitlines() if line]


def _secret(name: str) -> str:
    return (INVENTORY.parent / f"secrets/{name}.txt").read_text().split()[0]


def redis_cli(*args: str, host: str | None = None, port: int = 6379, timeout: float = 60) -> str:
    """redis-cli on a redis host (default: the current master) against its own instance: Redis
    as its admin user (the application's default user may not CONFIG, INFO or DEBUG), Sentinel
    (26379) with its clients' password."""
    user, password = ("--user admin", _secret("redis_admin_password")) if port == 6379 else \
        ("", _secret("redis_password"))
    cmd = f"REDISCLI_AUTH={shlex.quote(password)} timeout 10 synspirit-redis-cli {user} --no-auth-warning " \
        f"-p {port} " + " ".join(shlex.quote(a) for a in args)
    return ssh(host or redis_master(), cmd, timeout=timeout).strip()


REDIS_HOSTS = INV["groups"].get("redis", [])
HOST_OF = {address: name for name, address in ADDR.items()}


def redis_master(among: list[str] | None = None) -> str:
    """The redis host the Sentinels name master (asked of each of `among` until one answers)."""
    for host in among or REDIS_HOSTS:
        try:
            out = redis_cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "synspirit", host=host, port=26379,
                            timeout=15).split()
        except (RuntimeError, subprocess.TimeoutExpired):
            continue
        if out:
            return HOST_OF[out[0]]
    raise RuntimeError(f"no Sentinel among {among or REDIS_HOSTS} names a master")


def move_redis_master(to: str) -> None:
    """Make `to` the Redis master (a planned SENTINEL FAILOVER), if it is not: the other
    replicas get replica-priority 0 (never promoted) until it is done. Sentinel reads a
    replica's priority from its INFO, every 10 s."""
    if redis_master() == to:
        return
    others = [h for h in REDIS_HOSTS if h not in (to, redis_master())]
    for host in others:
        redis_cli("CONFIG", "SET", "replica-priority", "0", host=host)
    try:
        time.sleep(11)
        redis_cli("SENTINEL", "FAILOVER", "synspirit", host=to, port=26379)
        if not wait_for(lambda: all(redis_master([h]) == to for h in REDIS_HOSTS), 60, 0.5):
            raise RuntimeError(f"SENTINEL FAILOVER did not make {to} the Redis master")
        # Writes need a replica that acknowledges (min-replicas-to-write): connected is not
        # enough, the master counts a replica good once its first REPLCONF ACK arrived (a
        # scenario that wrote at once got NOREPLICAS: 503).
        if not wait_for(lambda: good_replicas(to) >= 1, 60, 0.5):
            raise RuntimeError(f"no replica of {to} acknowledges after the failover")
    finally:
        for host in others:
            redis_cli("CONFIG", "SET", "replica-priority", "100", host=host)
    # The Sentinels read the restored priority from INFO within 10 s; until then a failover
    # (the next scenario's) finds no replica it may promote.
    if not wait_for(lambda: all(_priorities_seen(h) for h in REDIS_HOSTS), 30, 1):
        raise RuntimeError("the Sentinels still see replica-priority 0")
    log(f"moved the Redis master to {to}")


def good_replicas(host: str) -> int:
    info = redis_cli("INFO", "replication", host=host)
    return next((int(line.split(":")[1]) for line in info.splitlines()
                 if line.startswith("min_slaves_good_slaves:")), 0)


def _priorities_seen(sentinel: str) -> bool:
    """Every replica the Sentinel on `sentinel` knows has a non-zero priority."""
    out = redis_cli("SENTINEL", "REPLICAS", "synspirit", host=sentinel, port=26379).split()
    values = [out[i + 1] for i, field in enumerate(out[:-1]) if field == "slave-priority"]
    return bool(values) and "0" not in values


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


def crash(host: str) -> float:
    """`lab.sh crash HOST` (power loss); the wall-clock time of the SIGKILL."""
    out = subprocess.run([str(LAB_SH), "crash", host], check=True, timeout=300, capture_output=True,
                         text=True, env={**os.environ, "LAB_ID": LAB_ID}).stdout
    log(out.strip().splitlines()[-1] if out.strip() else f"{host} crashed")
    return float(out.rsplit(" at ", 1)[1].split()[0])


def unit_pids(host: str) -> dict[str, int]:
    """unit -> main PID of every SynSpirit unit running on the host."""
    out = ssh(host, "for u in $(systemctl list-units --plain --no-legend --state=running 'synspirit-*' "
                    "| awk '{print $1}'); do echo $u $(systemctl show -P MainPID $u); done", timeout=30)
    return {unit: int(pid) for unit, pid in (line.split() for line in out.splitlines() if line.strip())}


def unit_pid(host: str, unit: str) -> int:
    return int(ssh(host, f"systemctl show -P MainPID {unit}").strip())


def wait_for(predicate, timeout: float, interval: float = 0.5):
    """testkit's wait_until, for a probe that may fail while a host is away."""
    return wait_until(predicate, timeout, interval, ignore=Exception)


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


def worker_task_runs(host: str) -> dict[str, float]:
    """Task runs by task name (succeeded, failed or retried), summed over the host's worker
    instances' /metrics, read on the host itself; {} when none answers."""
    runs: dict[str, float] = {}
    for port in WORKER_METRICS_PORTS:
        text = ssh(host, f"python3 -c 'import urllib.request as u; print(u.urlopen("
                         f"\"http://{ADDR[host]}:{port}/metrics\", timeout=5).read().decode())'",
                   timeout=20, check=False)
        for line in text.splitlines():
            if line.startswith(("synspirit_celery_task_succeeded_total{",
                                "synspirit_celery_task_failed_total{",
                                "synspirit_celery_task_retried_total{")):
                task = line.split('task="', 1)[1].split('"', 1)[0]
                runs[task] = runs.get(task, 0.0) + float(line.rsplit(" ", 1)[1])
    return runs


def served_by(host: str) -> bool:
    """The host's instances have answered API requests since they started (their /metrics)."""
    total = 0.0
    for line in instances(host, "/metrics").splitlines():
        if line.startswith("synspirit_http_requests_total{") and 'endpoint="/api/' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total > 0
