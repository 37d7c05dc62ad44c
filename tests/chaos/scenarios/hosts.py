"""Whole hosts away: a web host powered off and booted, the data host's network cut."""
from __future__ import annotations

import subprocess
import threading
import time

from accounting import ALLOWED_OUTAGE, Run
from labhosts import LAB_ID, LB, WEB, cluster, instances_ready, lab_sh, served_by, ssh, units_active, wait_for
from load import session


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


NETCUT_RECOVERY_S = 30


def s_network_cut() -> list[dict]:
    # The host of the PostgreSQL primary, wherever earlier scenarios left it: cutting a replica's
    # host leaves /readyz at 200 (the application needs only the primary and the Redis master).
    # 10 s is less than the leader lock's ttl: no failover, the same primary comes back.
    host = next(m["Member"] for m in cluster() if m["Role"] == "Leader")
    veth = f"vb-{'l' + LAB_ID if LAB_ID != '0' else ''}{host}"
    with Run(f"network cut web<->{host} (PostgreSQL primary) 10 s") as run:
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
        # A demoted primary's fast shutdown once waited 60 s (wal_sender_timeout) for standbys
        # whose connections died with the link, holding Patroni's leader lock: no primary for
        # 59.5 s (roles/postgresql/vars/main.yml).
        run.checks[f"/readyz 200 within {NETCUT_RECOVERY_S} s of the link's return"] = (
            recovery is not None and recovery <= NETCUT_RECOVERY_S)
        run.notes.append(f"link {veth} down {t_up - t_cut:.1f} s")
        ready = wait_for(instances_ready, 60, 1)
        run.checks["every web instance ready again"] = bool(ready)
        return [run.finish(recovery, allowed=ALLOWED_OUTAGE)]
