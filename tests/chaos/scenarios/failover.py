"""Power loss of a host that has a standby: the Redis master (Sentinel promotes a replica) and
the load balancer holding the floating address (keepalived moves it). `lab.sh crash` kills
every process of the host at once; `lab.sh boot` brings it back as a standby."""
from __future__ import annotations

import subprocess
import threading
import time

from accounting import ALLOWED_OUTAGE, Run, first_success_after
from labhosts import (
    ADDR,
    DATA,
    FLOATING,
    INV,
    LB,
    REDIS_HOSTS,
    WEB,
    crash,
    good_replicas,
    instances_ready,
    lab_sh,
    log,
    primary,
    redis_cli,
    redis_master,
    ssh,
    unit_pids,
    wait_for,
)
from load import session

from scenarios.workers import article_burst, articles_rendered

NEW_REDIS_MASTER_WITHIN = 15  # s, issue 14
FLOATING_ADDRESS_WITHIN = 5  # s, issue 14


def s_crash_redis_master() -> list[dict]:
    old = redis_master()
    pg_primary = primary() or DATA
    if old == pg_primary:
        # The crash is to hit Redis alone, not PostgreSQL's primary with it: a planned switchover
        # first (docs/operations.md), which Sentinel carries out like a failover.
        redis_cli("SENTINEL", "FAILOVER", "synspirit", host=old, port=26379)
        moved = wait_for(lambda: (m := redis_master()) != old and _replicates(old, m)
                         and good_replicas(m) >= 1 and m, 60, 0.5)
        if not moved:
            raise RuntimeError(f"SENTINEL FAILOVER did not move the master away from {old}")
        log(f"switched the Redis master over from {old} to {moved} (PostgreSQL's primary is on {old})")
        old = moved
    others = [h for h in REDIS_HOSTS if h != old]
    # Followed without a restart: the same processes before and after.
    before = {h: unit_pids(h) for h in WEB}
    with Run(f"crash of the Redis master ({old})") as run:
        wall_crash = crash(old)
        events_at_crash = run.subs.events
        new = wait_for(lambda: (m := redis_master(others)) != old and m, 60, 0.2)
        promoted = time.time() - wall_crash
        switched = _switch_master_at(new or others[0], wall_crash)
        if switched is not None:
            run.notes.append(f"+switch-master in {new}'s Sentinel log "
                             f"{switched - wall_crash:.1f} s after the crash")
        run.notes.append(f"{old} crashed; Sentinel named {new or 'nobody'} master after {promoted:.1f} s")
        run.checks[f"a new master within {NEW_REDIS_MASTER_WITHIN} s"] = \
            bool(new) and promoted <= NEW_REDIS_MASTER_WITHIN
        # From the SIGKILL to the next acknowledged write once the new master is known.
        back = first_success_after(run.load, time.monotonic() - (time.time() - wall_crash), 60)
        ready = wait_for(instances_ready, 60, 1)
        run.checks["every web instance ready again"] = bool(ready)
        # The cpu workers take new work from the new master: a burst of long articles renders.
        burst = article_burst(run.users[3], 5)
        rendered = wait_for(lambda: articles_rendered(burst)[0] == len(burst), 90, 1)
        run.checks["cpu workers render after the failover"] = bool(rendered)
        time.sleep(5)
        run.checks["Socket.IO events delivered after the failover"] = run.subs.events > events_at_crash
        after = {h: unit_pids(h) for h in WEB}
        restarted = {h: sorted(u for u in before[h] if before[h][u] != after[h].get(u)) for h in WEB}
        run.checks["web instances, workers and beat not restarted"] = not any(restarted.values())
        if any(restarted.values()):
            run.notes.append(f"restarted: {restarted}")
        # The old master powers on again and Sentinel makes it a replica of the new one.
        lab_sh("boot", old)
        t_boot = time.monotonic()
        rejoined = wait_for(lambda: _replicates(old, new), 90, 1)
        run.checks[f"{old} back as a replica of {new}"] = bool(rejoined)
        run.notes.append(f"{old} a replica again {time.monotonic() - t_boot:.1f} s after its boot"
                         if rejoined else f"{old} not a replica 90 s after its boot")
        result = run.finish(back, allowed=ALLOWED_OUTAGE, view_window=10**9)
        result["redis_failover_s"] = round(promoted, 1)
        log(f"views acknowledged but not counted (lost with the master's last second): "
            f"{result['views_lost_after_acknowledged_count']}")
        return [result]


def _switch_master_at(host: str, since: float) -> float | None:
    """Wall-clock time of the first +switch-master in the host's Sentinel log after `since`."""
    out = ssh(host, f"journalctl -u redis-sentinel --since @{int(since) - 1} -o short-unix --no-pager "
                    "| grep -m1 '+switch-master' || true", timeout=30, check=False)
    return float(out.split()[0]) if out.strip() else None


def _replicates(host: str, master: str) -> bool:
    info = redis_cli("INFO", "replication", host=host, timeout=15)
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return (fields.get("role"), fields.get("master_host"), fields.get("master_link_status")) \
        == ("slave", ADDR[master], "up")


def floating_holders() -> list[str]:
    """The lb hosts that have the floating address on an interface now."""
    found = []
    for host in INV["groups"].get("lb", []):
        try:
            addresses = ssh(host, "ip -o -4 addr show", timeout=10, check=False)
        except subprocess.TimeoutExpired:  # a crashed host does not answer
            continue
        if f" {FLOATING}/" in addresses:
            found.append(host)
    return found


def s_crash_lb() -> list[dict]:
    [holder] = floating_holders()
    with Run(f"crash of the load balancer holding the address ({holder})") as run:
        answers: list[tuple[float, int]] = []
        stop = threading.Event()

        def probe():
            s = session()
            while not stop.is_set():
                sent = time.time()
                try:
                    code = s.get(f"{LB}/readyz", timeout=1).status_code
                except Exception:  # noqa: BLE001 - no answer yet
                    code = 0
                    s = session()  # a connection to the dead host stays dead
                answers.append((sent, code))
                time.sleep(0.1)

        th = threading.Thread(target=probe, daemon=True)
        th.start()
        t_crash = crash(holder)
        # keepalived on the other host takes the address after its VRRP timeout (~2 s).
        def moved() -> list[str] | None:
            h = floating_holders()
            return h if len(h) == 1 and h[0] != holder else None

        holders = wait_for(moved, 30, 0.5) or floating_holders()
        t_held = time.time()
        wait_for(lambda: any(t > t_held and c == 200 for t, c in answers), 30, 0.1)
        stop.set()
        th.join(5)
        # The outage: from the SIGKILL to the first 200 after the first request that failed
        # (the dying host may still answer for ~0.1 s after the kill: a CI run measured 0.1 s
        # and checked the holders while nobody had the address yet).
        after = [(t, c) for t, c in answers if t > t_crash]
        first_failure = min((t for t, c in after if c != 200), default=t_crash)
        answered = min((t for t, c in after if t >= first_failure and c == 200), default=None)
        if answered is not None:
            answered -= t_crash
        run.notes.append(f"{holder} crashed; the floating address answered again after "
                         f"{answered if answered is None else round(answered, 1)} s, held by {holders}")
        run.checks[f"the floating address answers within {FLOATING_ADDRESS_WITHIN} s"] = \
            answered is not None and answered <= FLOATING_ADDRESS_WITHIN
        run.checks["exactly one other lb host holds it"] = len(holders) == 1 and holders[0] != holder
        # A websocket to the dead host sees nothing until engine.io's ping deadline (ping
        # interval 25 s + timeout 20 s, backend/app/__init__.py): then each client reconnects,
        # through the address now on the other host, and subscribes again.
        resubscribed = wait_for(lambda: run.subs.disconnects >= run.subs.n and not run.subs.still_down(),
                                90, 1)
        run.checks["every Socket.IO client reconnected and resubscribed"] = bool(resubscribed)
        lab_sh("boot", holder)
        settled = wait_for(lambda: (h := floating_holders()) == holders and h, 60, 1)
        run.checks[f"{holder} back without taking the address (one holder)"] = bool(settled)
        result = run.finish(answered, allowed=ALLOWED_OUTAGE, max_gap=60)
        result["floating_address_s"] = None if answered is None else round(answered, 1)
        return [result]
