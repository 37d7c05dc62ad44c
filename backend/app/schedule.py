"""The periodic tasks, and the scheduler that sends them: celery beat with RedBeat's scheduler.

Beat runs on every host of the `beat` group; exactly one of them sends tasks at a time, the one
that holds RedBeat's lock in Redis. The others wait for the lock: when the active beat's host
dies, its lock expires LOCK_TIMEOUT after its last renewal and a waiting beat, which tries every
LOOP_INTERVAL, takes it: periodic tasks stop for at most LOCK_TIMEOUT + LOOP_INTERVAL = 35 s.

The schedule itself is kept in Redis too (each entry's last run), so the beat that takes over
sends each task when its period since the LAST run (by whichever beat) is over: nothing runs
twice in one period and nothing waits longer than its period plus the takeover. (celery's own
scheduler keeps it in a file on the beat's host: a beat started elsewhere sends everything at
once.) The active beat renews the lock before sending anything on each tick (at least every
LOOP_INTERVAL); a beat that lost it (Redis unreachable or the process stalled for LOCK_TIMEOUT,
and another beat took over) fails that renewal, sends nothing and exits, and systemd starts it
again as a waiting beat. A Redis briefly unreachable (a restart, a Sentinel failover) only
delays the ticks (Scheduler below). A beat stopped cleanly (systemctl stop, a deploy) gives the
lock back at once. What each task does and what lateness costs: docs/operations.md
("Periodic tasks").
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import redis.exceptions
from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock

from .config import parse_redis_url

log = logging.getLogger(__name__)

# Seconds. The lock must outlive the longest pause of a healthy active beat between two renewals
# (one LOOP_INTERVAL plus a slow Redis call: socket_timeout 3 s), or a second beat would take
# over from a live one; the takeover after a crash is at most their sum (the issue asks for
# under a minute). tests/backend/workers/test_beat_failover.py kills the active beat.
LOOP_INTERVAL = 5
LOCK_TIMEOUT = 30

# Redis keys of the scheduler: the lock, the schedule (a sorted set) and one hash per entry.
KEY_PREFIX = "synspirit:beat:"

# `expires` (s): a periodic task still queued when its next run is due is dropped, so a backlog
# never runs the same sweep many times over.
BEAT_SCHEDULE = {
    # Views are flushed within a second by the flush that the first view after a flush
    # schedules; this catches any buffered view whose scheduled flush was lost. (At 1 s
    # it doubled the writes per 1,000 views in `make bench`.)
    "flush-views": {"task": "app.tasks.flush_view_counts", "schedule": 10.0,
                    "options": {"expires": 9}},
    "hot-rankings": {"task": "app.tasks.recompute_hot_scores", "schedule": 60.0,
                     "options": {"expires": 55}},
    # Safety nets for work whose task could not be enqueued (broker away).
    "reconcile-counts": {"task": "app.tasks.reconcile_counts", "schedule": 60.0,
                         "options": {"expires": 55}},
    "render-pending": {"task": "app.tasks.render_pending_articles", "schedule": 60.0,
                       "options": {"expires": 55}},
    # Read notifications older than NOTIFICATION_RETENTION_DAYS, at most PRUNE_BATCH a run.
    "prune-notifications": {"task": "app.tasks.prune_notifications", "schedule": 60.0,
                            "options": {"expires": 55}},
}


class Scheduler(RedBeatScheduler):
    """RedBeat's scheduler, riding out a Redis that is briefly unreachable (a restart, a failover
    to another master): a tick that cannot reach Redis is tried again LOOP_INTERVAL later
    instead of ending the process. RedBeat's own tick renews the lock first, so nothing is sent
    without the lock; once the lock expired and another beat took it, the renewal fails
    (LockNotOwnedError, not a connection error) and the process ends (systemd starts it again
    as a waiting beat). A beat whose first try for the lock failed on Redis tries again too."""

    def tick(self, *args, **kwargs):
        try:
            if self.lock_key and self.lock is None:
                acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=self))
                if self.lock is None:
                    return LOOP_INTERVAL
            return super().tick(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            log.warning("beat: Redis unreachable (%s); trying again in %s s", e, LOOP_INTERVAL)
            return LOOP_INTERVAL


def beat_config(redis_url: str) -> dict:
    """Celery settings of the scheduler (RedBeat), on the application's Redis: REDIS_URL as
    config.parse_redis_url reads it, a plain URL or the master that Redis Sentinels name."""
    location = parse_redis_url(redis_url)
    # Bounded socket waits, as for the broker (celery_config.py): a Redis gone silent fails the
    # tick in seconds, well within the lock's life.
    options = {"socket_connect_timeout": 3, "socket_timeout": 3}
    if location.sentinels:
        # RedBeat's own Sentinel client: a URL that starts with redis-sentinel (which only picks
        # that client) and the Sentinels, the master's name, db and password in the options.
        redis_settings = {
            "redbeat_redis_url": f"redis-sentinel://{location.master}",
            "redbeat_redis_options": {**options, **location.auth, "db": location.db,
                                      "sentinels": list(location.sentinels),
                                      "service_name": location.master,
                                      "sentinel_kwargs": location.sentinel_kwargs()},
        }
    else:
        redis_settings = {"redbeat_redis_url": location.url, "redbeat_redis_options": options}
    if location.tls:  # RedBeat's own clients over TLS, the server's certificate checked
        redis_settings["redbeat_redis_use_ssl"] = location.ssl_options()
    return {
        "beat_schedule": BEAT_SCHEDULE,
        "beat_scheduler": "app.schedule:Scheduler",
        "beat_max_loop_interval": LOOP_INTERVAL,
        **redis_settings,
        "redbeat_key_prefix": KEY_PREFIX,
        "redbeat_lock_timeout": LOCK_TIMEOUT,
    }
