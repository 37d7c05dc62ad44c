"""The PostgreSQL cluster under faults: the primary's host crashes, the primary is cut off from
the other members, an etcd member crashes. Patroni must elect one new primary, lose no
acknowledged write, and bring the former primary back as a replica without hands."""
from __future__ import annotations

import json
import subprocess
import threading
import time

from accounting import ALLOWED_OUTAGE, Run, first_success_after
from labhosts import INV, MEMBERS, SSH_OPTS, cluster, lab_sh, log, move_redis_master, ssh, wait_for

ETCD = INV["groups"].get("etcd", MEMBERS)
WRITES_BACK_WITHIN = 30  # s from the crash to the next acknowledged write (issue 14)
REJOIN_TIMEOUT = 240  # s for a former primary to stream from the new one after its boot


def writes_back_after(load, t: float, timeout: float) -> float | None:
    """Seconds from t until writes succeed again: the first acknowledged write that follows
    the first failed one (a write acknowledged before the outage showed is no recovery)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failed = load.stats.last_failure
        if failed is not None and failed >= t:
            break
        time.sleep(0.05)
    else:
        return None
    return first_success_after(load, t, deadline - time.monotonic())


def leader_key(exclude: frozenset[str]) -> str | None:
    """Who holds Patroni's leader lock, read from etcd on a member not in `exclude` (etcdctl
    answers in milliseconds, patronictl in a second or two)."""
    for host in ETCD:
        if host not in exclude:
            out = ssh(host, "synspirit-etcdctl get --print-value-only /synspirit/15-main/leader",
                      timeout=10, check=False)
            return out.strip() or None
    return None


def lock_taken(old: str, t: float, timeout: float) -> tuple[str | None, float | None]:
    """(the member that took the leader lock from `old`, seconds after t), polled every 0.2 s."""
    found = wait_for(lambda: (k := leader_key(frozenset({old}))) not in (None, old) and k, timeout, 0.2)
    return (found, time.monotonic() - t) if found else (None, None)


def writes_and_lock(load, old: str, t: float) -> tuple[float | None, str | None, float | None]:
    """Both, watched at the same time: writes back after, new leader, lock taken after."""
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(back=writes_back_after(load, t, 90)), daemon=True)
    th.start()
    new, locked = lock_taken(old, t, 90)
    th.join(100)
    return result.get("back"), new, locked


def streaming_replicas(primary: str) -> set[str]:
    out = ssh(primary, "cd /tmp && runuser -u postgres -- psql -XAtc "
                       "\"select application_name from pg_stat_replication where state = 'streaming'\"")
    return set(out.split())


def rejoined(old: str, new: str) -> bool:
    """`old` runs as a replica of `new`, streaming."""
    members = {m["Member"]: m for m in cluster()}
    return (members.get(old, {}).get("Role") in ("Replica", "Sync Standby")
            and members[old].get("State") in ("running", "streaming")
            and old in streaming_replicas(new))


def timeline(members: list[dict]) -> int:
    return max(int(m.get("TL") or 0) for m in members)


def s_crash_primary() -> list[dict]:
    with Run("crash of the PostgreSQL primary") as run:
        before = cluster()
        old = leader_key(frozenset())  # who holds the lock now, not when the load started
        t = time.monotonic()
        lab_sh("crash", old)
        log(f"crashed {old}, the primary")
        back, new, locked = writes_and_lock(run.load, old, t)
        run.notes.append(f"{old} crashed; {new} took the leader lock after {locked and round(locked, 1)} s; "
                         f"writes back after {back and round(back, 1)} s")
        run.checks[f"writes succeed again within {WRITES_BACK_WITHIN} s"] = (
            back is not None and back <= WRITES_BACK_WITHIN)
        run.checks["a new primary"] = bool(new)
        time.sleep(5)
        run.load.stop()
        t_boot = time.monotonic()
        try:
            lab_sh("boot", old)
        except subprocess.CalledProcessError:
            # Seen once on the loaded lab (2026-12-02): nspawn died booting a host crashed a few
            # seconds before. A second boot is what an operator does; noted in the result.
            run.notes.append(f"lab.sh boot {old} failed once; booted again")
            time.sleep(5)
            lab_sh("boot", old)
        ok = wait_for(lambda: rejoined(old, new), REJOIN_TIMEOUT, 2) if new else False
        run.notes.append(f"{old} streaming from {new} {time.monotonic() - t_boot:.0f} s after its boot" if ok
                         else f"{old} not a streaming replica {REJOIN_TIMEOUT} s after its boot")
        run.checks["the former primary rejoined as a replica by itself"] = bool(ok)
        after = cluster()
        run.checks["one leader"] = sum(m["Role"] == "Leader" for m in after) == 1
        run.checks["one new timeline"] = timeline(after) == timeline(before) + 1
        return [run.finish(back, allowed=ALLOWED_OUTAGE)]


def sample_roles(members: list[str], seconds: float) -> dict[str, subprocess.Popen]:
    """Start, on every member at once, a loop that prints `TIME f` (writable) or `TIME t`
    (replica, or `down`) every 0.2 s for `seconds`. The lab's hosts share the controller's clock."""
    loop = (f"end=$(( $(date +%s) + {int(seconds)} )); while [ $(date +%s) -lt $end ]; do "
            "echo \"$(date +%s.%N) $(cd /tmp && timeout 2 runuser -u postgres -- psql -XAtc "
            "'select pg_is_in_recovery()' 2>/dev/null || echo down)\"; sleep 0.2; done")
    return {m: subprocess.Popen(["ssh", *SSH_OPTS, f"root@{INV['addresses'][m]}", loop],
                                stdout=subprocess.PIPE, text=True) for m in members}


def role_samples(samplers: dict) -> list[tuple[float, str, bool]]:
    """Every member's samples, (time, member, writable), in time order."""
    events = []
    for member, proc in samplers.items():
        out, _ = proc.communicate(timeout=120)
        for line in out.splitlines():
            stamp, _, answer = line.partition(" ")
            events.append((float(stamp), member, answer.strip() == "f"))
    return sorted(events)


def writable_at_once(events: list[tuple[float, str, bool]]) -> list[tuple[float, set[str]]]:
    """The times at which two members or more were writable by their latest answers."""
    state: dict[str, bool] = {}
    both = []
    for stamp, member, writable in events:
        state[member] = writable
        if sum(state.values()) > 1:
            both.append((stamp, {m for m, w in state.items() if w}))
    return both


PARTITION_S = 40  # longer than the leader lock's ttl (20 s): the others must elect a primary
# The cut-off host holds the Redis master too (the harder case, made certain): it refuses
# writes once no replica has acknowledged it for min-replicas-max-lag (3 s, the Redis role)
# and the clients follow the other Sentinels' new master. Views acknowledged by it within this
# many seconds of the cut may be lost (Redis replicates asynchronously); none after.
REDIS_ALONE_S = 3 + 2


def s_partition_primary() -> list[dict]:
    old = next(m["Member"] for m in cluster() if m["Role"] == "Leader")
    move_redis_master(old)
    with Run("primary cut off from the other members") as run:
        others = [m for m in MEMBERS if m != old]
        addresses = ", ".join(INV["addresses"][m] for m in others)
        # On the primary: nothing to or from the other members (PostgreSQL, Patroni, etcd); the
        # web hosts and the controller still reach it, so the application keeps writing to it.
        rules = (f"table inet chaos {{\n"
                 f"  chain input {{ type filter hook input priority -10;\n"
                 f"    ip saddr {{ {addresses} }} drop; }}\n"
                 f"  chain output {{ type filter hook output priority -10;\n"
                 f"    ip daddr {{ {addresses} }} drop; }}\n"
                 f"}}\n")
        views_at_cut = sum(run.load.views.values())
        ssh(old, f"nft -f - <<'EOF'\n{rules}EOF")
        log(f"{old} (primary and Redis master) cut off from {', '.join(others)} for {PARTITION_S} s")
        wall = time.time()
        samplers = sample_roles(MEMBERS, PARTITION_S)
        try:
            time.sleep(REDIS_ALONE_S)
            views_at_risk = sum(run.load.views.values()) - views_at_cut
            time.sleep(PARTITION_S - REDIS_ALONE_S)
        finally:
            ssh(old, "nft delete table inet chaos")
        events = role_samples(samplers)
        two = writable_at_once(events)
        demoted = next((round(t - wall, 1) for t, m, w in events if m == old and not w), None)
        promoted = next(((round(t - wall, 1), m) for t, m, w in events if m != old and w), None)
        new = promoted[1] if promoted else None
        run.notes.append(f"{old} stopped accepting writes after {demoted} s; "
                         + (f"{new} promoted after {promoted[0]} s; " if promoted else "no promotion; ")
                         + f"{len(events)} samples of the members' roles")
        run.checks["never two writable members (no split brain)"] = not two
        run.checks["another member became the primary"] = promoted is not None
        time.sleep(5)
        run.load.stop()
        ok = wait_for(lambda: rejoined(old, new), REJOIN_TIMEOUT, 2) if new else False
        run.checks["the former primary rejoined as a replica by itself"] = bool(ok)
        run.checks["one leader"] = sum(m["Role"] == "Leader" for m in cluster()) == 1
        run.notes.append(f"{views_at_risk} views acknowledged in the first {REDIS_ALONE_S} s of the cut")
        result = run.finish(promoted[0] if promoted else None, allowed=ALLOWED_OUTAGE,
                            view_window=views_at_risk)
        log(f"views acknowledged but not counted: {result['views_lost_after_acknowledged_count']} "
            f"(at most {views_at_risk} allowed)")
        return [result]


ETCD_DOWN_S = 30  # longer than the leader lock's ttl: a Patroni that lost etcd would show it


def etcd_leader(exclude: frozenset[str] = frozenset()) -> str:
    """The etcd member that is the raft leader, by inventory name, asked on a member not in
    `exclude` (with a member down etcdctl exits 1 but still prints the others' status)."""
    asked = next(h for h in ETCD if h not in exclude)
    status = json.loads(ssh(asked, "synspirit-etcdctl endpoint status --cluster -w json 2>/dev/null",
                            check=False))
    by_address = {INV["addresses"][h]: h for h in ETCD}
    for s in status:
        if s["Status"]["leader"] == s["Status"]["header"]["member_id"]:
            return by_address[s["Endpoint"].split("//")[1].rsplit(":", 1)[0]]
    raise RuntimeError(f"no etcd leader: {status}")


def s_crash_etcd_member() -> list[dict]:
    with Run("crash of the etcd leader") as run:
        before = cluster()
        primary = next(m["Member"] for m in before if m["Role"] == "Leader")
        victim = etcd_leader()
        # kill -9 is the crash; the stop that follows keeps systemd from restarting it at once.
        ssh(victim, "systemctl kill --kill-who=main --signal=KILL etcd && systemctl stop etcd")
        t = time.monotonic()
        log(f"etcd on {victim} (the etcd leader; PostgreSQL primary: {primary}) killed for {ETCD_DOWN_S} s")
        new_leader = wait_for(lambda: (k := etcd_leader(frozenset({victim}))) != victim and k, 30, 0.5)
        elected = time.monotonic() - t
        time.sleep(max(0.0, ETCD_DOWN_S - (time.monotonic() - t)))
        during = cluster()
        ssh(victim, "systemctl start etcd")
        healthy = wait_for(lambda: "is healthy" in ssh(victim, "synspirit-etcdctl endpoint health 2>&1",
                                                       check=False), 60, 1)
        after = cluster()
        run.notes.append(f"etcd leader {victim} down {ETCD_DOWN_S} s; new etcd leader {new_leader} "
                         f"after <= {elected:.1f} s; PostgreSQL primary {primary}")
        run.checks["a new etcd leader"] = bool(new_leader)
        run.checks["no failover (same primary, same timeline)"] = (
            [m["Member"] for m in during + after if m["Role"] == "Leader"] == [primary, primary]
            and timeline(after) == timeline(before))
        run.checks["etcd member healthy again"] = bool(healthy)
        return [run.finish(None, allowed=set())]


def s_switchover() -> list[dict]:
    """The runbook's planned switchover (docs/operations.md), under load."""
    with Run("planned switchover (patronictl)") as run:
        before = cluster()
        old = next(m["Member"] for m in before if m["Role"] == "Leader")
        standby = next(m["Member"] for m in before if m["Role"] == "Sync Standby")
        t = time.monotonic()
        ssh(old, f"patronictl -c /etc/patroni/config.yml switchover 15-main --leader {old} "
                 f"--candidate {standby} --force", timeout=120)
        took = time.monotonic() - t
        back, new, locked = writes_and_lock(run.load, old, t)
        run.notes.append(f"switchover {old} -> {new}: patronictl returned after {took:.1f} s, "
                         f"writes back after {back and round(back, 1)} s")
        run.checks["the standby is the new primary"] = new == standby
        time.sleep(5)
        run.load.stop()
        ok = wait_for(lambda: rejoined(old, standby), REJOIN_TIMEOUT, 2)
        run.checks["the former primary streams from the new one"] = bool(ok)
        return [run.finish(back, allowed=ALLOWED_OUTAGE)]
