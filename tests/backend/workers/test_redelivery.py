"""A task taken by a worker that is then killed (kill -9, power loss) is run by another worker
soon after the visibility timeout, not up to 100 s later (kombu's default sweep: every 10th
sweep of a prefork worker's 10 s timer). Real workers, real Redis broker, real PostgreSQL."""
from __future__ import annotations

import os
import signal
import time
import uuid

from sqlalchemy import text

from testkit.processes import VENV_BIN, celery_ping
from testkit.waiting import wait_until

VISIBILITY = 4  # CELERY_VISIBILITY_TIMEOUT of the two workers started here
SWEEP = 5  # celery_config.RESTORE_SWEEP's interval: the bound this test checks


def _worker(procs, name: str, queue: str, node: str, stack_env) -> None:
    procs.spawn(name, [str(VENV_BIN / "celery"), "-A", "app.celery_utils", "worker",
                       "--pool=prefork", "-c", "1", "--prefetch-multiplier=1", "-Q", queue,
                       "-n", node, "--loglevel=INFO"],
                {**stack_env, "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY)})


def test_a_task_held_by_a_killed_worker_runs_on_another_soon_after_the_visibility_timeout(
        live_stack, api, db, stack_env, procs):
    from celery import Celery
    from redis import Redis

    tag = uuid.uuid4().hex[:8]
    queue, spare_queue = f"redeliver-{tag}", f"spare-{tag}"
    victim, survivor = f"victim-{tag}@test", f"survivor-{tag}@test"
    _, author = api.register()
    article = api.create("article", author, content="*redelivered*")
    assert wait_until(lambda: api.get(f"/api/articles/{article['id']}").json()["content_html"],
                      timeout=10)
    # Unrendered again, and kept out of the periodic render sweep (articles idle for 30 s).
    db.execute(text("UPDATE articles SET content_html = NULL, excerpt = NULL, "
                    "updated_at = now() + interval '1 hour' WHERE id = :id"), {"id": article["id"]})
    db.commit()

    def rendered():
        db.rollback()
        return db.execute(text("SELECT content_html FROM articles WHERE id = :id"),
                          {"id": article["id"]}).scalar()

    redis = Redis.from_url(stack_env["REDIS_URL"])
    client = Celery("synspirit-test-redelivery", broker=stack_env["REDIS_URL"])
    try:
        # The survivor consumes another queue for now: the task cannot go to it first. Its first
        # sweep (kombu scans on the first of every 10 calls) is over before the victim dies, so
        # only the sweeps after it can hand the task back.
        _worker(procs, "celery-survivor", spare_queue, survivor, stack_env)
        _worker(procs, "celery-victim", queue, victim, stack_env)
        assert wait_until(lambda: celery_ping(stack_env["REDIS_URL"], [survivor, victim]) ==
                          {survivor, victim}, timeout=120, interval=0.5), "workers did not start"
        time.sleep(11)
        assert client.control.add_consumer(queue, destination=[survivor], reply=True, timeout=5)
        # A countdown task is reserved at once and held until its time: the victim holds it.
        before = set(redis.hkeys("unacked"))
        client.send_task("app.tasks.render_article", args=[article["id"]], queue=queue,
                         countdown=3)
        held = wait_until(lambda: set(redis.hkeys("unacked")) - before, timeout=2, interval=0.02)
        assert held, "the victim did not reserve the task"
        victim_proc = procs.proc("celery-victim")
        os.killpg(victim_proc.pid, signal.SIGKILL)  # the main process and its pool child
        killed = time.monotonic()
        victim_proc.wait(10)
        assert rendered() is None, "the victim ran the task before it was killed"

        html = wait_until(rendered, timeout=VISIBILITY + SWEEP + 10, interval=0.2)
        took = time.monotonic() - killed
        assert "<em>redelivered</em>" in (html or ""), \
            f"not run {took:.0f} s after the kill (unacked: {redis.hlen('unacked')})"
        assert took < VISIBILITY + SWEEP + 8, took
        # The survivor acks after the task ran (acks_late): a moment after the render commits.
        assert wait_until(lambda: not set(redis.hkeys("unacked")) & held, timeout=10), \
            "the dead worker's entry stayed in unacked"
    finally:
        client.close()
        redis.close()
        procs.stop("celery-victim", "celery-survivor")
