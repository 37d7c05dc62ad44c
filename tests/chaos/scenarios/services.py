"""The data services restarted in place: Redis, PostgreSQL."""
from __future__ import annotations

import time

from accounting import Run, first_success_after
from labhosts import WEB, instances_ready, primary, redis_master, ssh, units_active, wait_for


def s_redis_restart() -> list[dict]:
    master = redis_master()
    with Run(f"restart Redis (the master, {master})") as run:
        fsync = ssh(master, "grep -E '^appendfsync' /etc/redis/redis.conf").split()[-1]
        run.notes.append(f"appendfsync {fsync}")
        t = time.monotonic()
        ssh(master, "systemctl restart redis-server")
        t_end = time.monotonic()
        run.notes.append(f"restart took {t_end - t:.1f} s")
        back = first_success_after(run.load, t_end, 60)
        time.sleep(10)
        ready = wait_for(instances_ready, 60, 1)
        run.checks["every web instance ready again"] = bool(ready)
        run.checks["worker units active"] = all(units_active(h) for h in WEB)
        return [run.finish(back, allowed={"503"}, view_window=0)]


def s_postgres_restart() -> list[dict]:
    with Run("restart PostgreSQL (the primary, in place)") as run:
        host = primary()
        # Patroni restarts its server (fast shutdown, start) and keeps the leader lock: no failover.
        t_down = time.monotonic()
        ssh(host, f"patronictl -c /etc/patroni/config.yml restart 15-main {host} --force", timeout=120)
        t_up = time.monotonic()
        run.notes.append(f"restart of {host} took {t_up - t_down:.1f} s; failures meanwhile "
                         f"{dict(run.load.stats.failed)}")
        back = first_success_after(run.load, t_up, 60)
        run.checks["serving within 5 s of PostgreSQL's return"] = back is not None and back <= 5
        run.checks["no failover"] = primary() == host
        time.sleep(5)
        return [run.finish(back, allowed={"503"})]
