"""Celery workers killed (kill -9) and restarted (systemctl) while they hold tasks."""
from __future__ import annotations

import threading
import time

from accounting import Run
from labhosts import (
    WEB,
    log,
    psql,
    redis_cli,
    ssh,
    unacked_summary,
    unit_pid,
    units_active,
    wait_for,
    wait_unacked_gone,
)
from load import User


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
            # then a live worker's sweep hands it back to its queue (celery_config.py).
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
