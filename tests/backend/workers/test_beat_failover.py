"""The scheduler is not one host: two real beats on the real Redis, exactly one sending; kill -9
of the active one and the other takes over within the lock's bound, every periodic task is sent
once per period across the takeover (never twice, never skipped longer than its period plus the
takeover), and a beat stopped cleanly gives the lock back at once (app/schedule.py)."""
from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from app.schedule import BEAT_SCHEDULE, KEY_PREFIX, LOCK_TIMEOUT, LOOP_INTERVAL

from testkit.processes import VENV_BIN
from testkit.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

QUEUES = ["io", "cpu"]
PERIOD = {entry["task"]: entry["schedule"] for entry in BEAT_SCHEDULE.values()}
EXPIRES = {entry["task"]: entry["options"]["expires"] for entry in BEAT_SCHEDULE.values()}
# Beat sends a task once its period since the last send is over, to within its clock's reading.
JITTER = 0.5
# The most a standby may take to send again after the active beat died: the lock runs out, then
# the standby's next try; plus the starts and polls of a loaded 2-core machine.
TAKEOVER = LOCK_TIMEOUT + LOOP_INTERVAL + 5


def _own_database(url: str) -> str:
    """The session's Redis, another database: these beats' lock, schedule and queues are their
    own (the session's beat holds the lock of the session's database), and no worker consumes
    what they send."""
    parts = urlsplit(url)
    assert parts.scheme in ("redis", "rediss"), f"a plain Redis URL is needed here, not {url}"
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))


def _log(procs, name: str) -> str:
    log = procs.log_of(name)
    return log.read_text(errors="replace") if log.exists() else ""


def _all_due(url: str) -> None:
    """The schedule as beats left it an hour ago (RedBeat's own entry API): every periodic task
    is due, so the first beat sends each of them at once, the minutely ones included."""
    from app.schedule import beat_config
    from celery import Celery
    from redbeat.schedulers import RedBeatSchedulerEntry

    client = Celery("synspirit-test-beat")
    client.conf.update(beat_config(url))
    an_hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    for name, spec in BEAT_SCHEDULE.items():
        entry = RedBeatSchedulerEntry(name, spec["task"], spec["schedule"],
                                      options=spec["options"], app=client)
        entry.save()
        entry.reschedule(last_run_at=an_hour_ago)
    client.close()


def _beat(procs, name: str, env: dict) -> None:
    procs.spawn(name, [str(VENV_BIN / "celery"), "-A", "app.celery_utils", "beat",
                       "--loglevel=INFO"], env)


class Sends:
    """Every task a beat sends, as it lands in the broker: (when the beat sent it, task name).
    The beat's own time of sending is in the message: its `expires` header is that time plus
    the entry's `expires` option (this test's clock, on a loaded machine, lags by a second)."""

    def __init__(self, redis):
        self.redis, self.seen, self.stop = redis, [], threading.Event()
        self.thread = threading.Thread(target=self._pop, daemon=True)
        self.thread.start()

    def _pop(self):
        while not self.stop.is_set():
            got = self.redis.brpop(QUEUES, timeout=1)
            if got:
                headers = json.loads(got[1])["headers"]
                sent = (datetime.datetime.fromisoformat(headers["expires"]).timestamp()
                        - EXPIRES[headers["task"]])
                self.seen.append((sent, headers["task"]))

    def of(self, task: str, after: float = 0.0) -> list[float]:
        return sorted(t for t, name in list(self.seen) if name == task and t > after)

    def close(self):
        self.stop.set()
        self.thread.join(5)


def test_a_standby_beat_takes_over_from_a_killed_one_without_running_a_task_twice(stack_env, procs):
    from redis import Redis

    env = {**stack_env, "REDIS_URL": _own_database(stack_env["REDIS_URL"])}
    redis = Redis.from_url(env["REDIS_URL"])
    lock = f"{KEY_PREFIX}:lock"

    def clean():
        redis.delete(*QUEUES, *redis.scan_iter(f"{KEY_PREFIX}*"))

    clean()
    _all_due(env["REDIS_URL"])
    sends = Sends(redis)
    try:
        _beat(procs, "beat-a", env)
        assert wait_until(lambda: "beat: Acquired lock" in _log(procs, "beat-a"), timeout=60,
                          interval=0.2), _log(procs, "beat-a")[-3000:]
        _beat(procs, "beat-b", env)
        assert wait_until(lambda: "beat: Starting" in _log(procs, "beat-b"), timeout=60,
                          interval=0.2), _log(procs, "beat-b")[-3000:]

        # Both run; only A sends: everything at once, then the view flush every 10 s. Kill it
        # just after its second flush, well within the minute of the minutely tasks.
        flush = BEAT_SCHEDULE["flush-views"]["task"]
        assert wait_until(lambda: len(sends.of(flush)) >= 2, timeout=PERIOD[flush] + 20,
                          interval=0.05), sends.seen
        assert all(sends.of(task) for task in PERIOD), f"not all sent at once: {sends.seen}"
        assert "Acquired lock" not in _log(procs, "beat-b"), "two beats hold the lock"
        assert 0 < redis.pttl(lock) <= LOCK_TIMEOUT * 1000
        os.killpg(procs.proc("beat-a").pid, signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        procs.proc("beat-a").wait(10)

        assert wait_until(lambda: "beat: Acquired lock" in _log(procs, "beat-b"), timeout=TAKEOVER + 10,
                          interval=0.2), f"no takeover: {_log(procs, 'beat-b')[-3000:]}"
        took = time.monotonic() - killed
        assert took <= TAKEOVER, f"the standby took over {took:.1f} s after the kill"

        # Every periodic task is sent again by B: the view flush at once (overdue), the minutely
        # ones a minute after A sent them, not when B took over.
        assert wait_until(lambda: all(sends.of(task, killed_at) for task in PERIOD),
                          timeout=max(PERIOD.values()) + TAKEOVER,
                          interval=0.2), f"not resumed: {sends.seen}"
        for task, period in PERIOD.items():
            times = sends.of(task)
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert all(gap >= period - JITTER for gap in gaps), f"{task} twice in a period: {gaps}"
            assert all(gap <= period + TAKEOVER for gap in gaps), f"{task} skipped: {gaps}"

        # A clean stop (systemctl stop, a deploy) gives the lock back at once.
        procs.stop("beat-b")
        assert redis.exists(lock) == 0, "a beat stopped cleanly kept the lock"
    finally:
        procs.stop("beat-a", "beat-b")
        sends.close()
        clean()
        redis.close()
