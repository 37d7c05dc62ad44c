"""The scheduler's host dies: the host whose beat holds the lock is crashed under load (power
loss); a beat on another host of the `beat` group takes over and every periodic task runs again
on the surviving workers (their task metrics), and nothing acknowledged is lost."""
from __future__ import annotations

import time

from accounting import ALLOWED_OUTAGE, Run
from app.schedule import BEAT_SCHEDULE, LOCK_TIMEOUT, LOOP_INTERVAL
from labhosts import BEAT, WORKER_HOSTS, lab_sh, log, served_by, ssh, units_active, wait_for, worker_task_runs

TASKS = {entry["task"] for entry in BEAT_SCHEDULE.values()}
LONGEST_PERIOD = max(entry["schedule"] for entry in BEAT_SCHEDULE.values())
TAKEOVER_WITHIN = 60  # s, the bound; the design's is LOCK_TIMEOUT + LOOP_INTERVAL


def holds_lock(host: str) -> bool:
    """The host's running beat took the lock (its current process logged so)."""
    out = ssh(host, "pid=$(systemctl show -P MainPID synspirit-beat); [ \"$pid\" -gt 0 ] && "
                    "journalctl -b _PID=$pid -o cat --no-pager | grep -c 'beat: Acquired lock'",
              timeout=15, check=False).strip()
    return out.isdigit() and int(out) > 0


def active_beat(hosts: list[str]) -> str | None:
    active = [h for h in hosts if holds_lock(h)]
    return active[0] if len(active) == 1 else None


def sent_since(host: str, since: float) -> set[str]:
    """Periodic tasks the host's beat sent since the wall-clock time `since`."""
    out = ssh(host, f"journalctl -u synspirit-beat --since @{int(since)} -o cat --no-pager | "
                    "grep -o 'Sending due task [^ ]* ([^)]*)' || true", timeout=15, check=False)
    return {line.rsplit("(", 1)[1].rstrip(")") for line in out.splitlines() if "(" in line}


def s_crash_beat_host() -> list[dict]:
    with Run("crash the active beat host") as run:
        host = wait_for(lambda: active_beat(BEAT), 60, 1)
        if not host:
            run.checks["one active beat before the crash"] = False
            return [run.finish(None, allowed=ALLOWED_OUTAGE)]
        others = [h for h in BEAT if h != host]
        survivors = [h for h in WORKER_HOSTS if h != host]
        lab_sh("crash", host)
        t_crash = time.monotonic()
        log(f"crashed {host}, the active beat's host; waiting for {', '.join(others)} to take over")
        new = wait_for(lambda: active_beat(others), TAKEOVER_WITHIN + 30, 1)
        takeover = time.monotonic() - t_crash
        wall_takeover = time.time()
        run.checks[f"another beat took over within {TAKEOVER_WITHIN} s"] = bool(new) and \
            takeover <= TAKEOVER_WITHIN
        run.notes.append(f"{host} crashed; " + (f"{new} took over after {takeover:.1f} s "
                         f"(bound {LOCK_TIMEOUT + LOOP_INTERVAL} s)" if new else "no takeover"))
        # Every periodic task is sent by the new beat and run by the surviving workers: within
        # its period after the takeover.
        base = {h: worker_task_runs(h) for h in survivors}

        def ran() -> set[str]:
            done = set()
            for h in survivors:
                now = worker_task_runs(h)
                done |= {t for t in TASKS if now.get(t, 0) > base[h].get(t, 0)}
            return done

        resumed = bool(new) and wait_for(
            lambda: ran() == TASKS and sent_since(new, wall_takeover - 2) >= TASKS,
            LONGEST_PERIOD + 30, 2)
        recovery = time.monotonic() - t_crash
        run.checks["every periodic task ran again after the takeover"] = bool(resumed)
        run.notes.append(f"periodic tasks ran again {recovery:.1f} s after the crash" if resumed
                         else f"not resumed: ran {sorted(ran())}")
        lab_sh("boot", host)
        back = wait_for(lambda: units_active(host) and
                        ssh(host, "systemctl is-system-running", check=False).strip() == "running",
                        180, 1)
        run.checks[f"every service back on {host} by itself"] = bool(back)
        run.checks[f"nginx routes to {host} again"] = bool(wait_for(lambda: served_by(host), 60, 1))
        run.checks["one active beat after the boot"] = active_beat(BEAT) == new
        return [run.finish(recovery, allowed=ALLOWED_OUTAGE)]
