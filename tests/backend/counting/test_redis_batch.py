"""Group commit of a Redis script (app/redis_batch.py), which every read of a post or article
goes through: concurrent callers share pipelines, yet each script runs exactly once and each
caller gets its own reply or its own error; nobody is left waiting when Redis fails. Against
the suite's real Redis, with real threads racing."""
from __future__ import annotations

import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from app.redis_batch import ScriptBatcher

# Counts a call and answers with its own argument; busy for a few ms inside Redis so that
# callers pile up behind the first round trip.
SCRIPT = """
local x = 0
for i = 1, 300000 do x = x + i end
if ARGV[1] == 'bad' then return redis.error_reply('ERR refused on purpose') end
return {redis.call('INCR', KEYS[1]), ARGV[1]}
"""


@pytest.fixture
def rc(stack_env):
    client = redis.Redis.from_url(stack_env["REDIS_URL"], socket_timeout=3)
    yield client
    client.close()


def _race(n: int, fn):
    """Run fn(i) for i in 0..n-1 from n threads released at once; results in order."""
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        return [f.exception(timeout=60) or f.result() for f in futures]


def test_concurrent_calls_share_round_trips_and_each_runs_once(rc):
    batcher, key = ScriptBatcher(SCRIPT), f"test:batch:{uuid.uuid4().hex}"
    results = _race(40, lambda i: batcher(rc, [key], [f"caller-{i}"]))

    assert int(rc.get(key)) == 40  # every call ran, none twice
    assert sorted(int(r[0]) for r in results) == list(range(1, 41))
    assert [r[1].decode() for r in results] == [f"caller-{i}" for i in range(40)]
    assert batcher.round_trips <= 10, batcher.round_trips  # 40 calls, a few pipelines


def test_a_flushed_script_cache_is_reloaded_without_running_a_call_twice(rc):
    batcher, key = ScriptBatcher(SCRIPT), f"test:batch:{uuid.uuid4().hex}"
    batcher(rc, [key], ["warm"])
    rc.script_flush()  # what a Redis restart does to the scripts
    results = _race(10, lambda i: batcher(rc, [key], [str(i)]))
    assert int(rc.get(key)) == 11
    assert sorted(int(r[0]) for r in results) == list(range(2, 12))


def test_one_failing_call_fails_alone(rc):
    batcher, key = ScriptBatcher(SCRIPT), f"test:batch:{uuid.uuid4().hex}"
    results = _race(12, lambda i: batcher(rc, [key], ["bad" if i == 5 else "ok"]))
    assert isinstance(results[5], redis.exceptions.ResponseError)
    assert "refused on purpose" in str(results[5])
    assert all(isinstance(r, list) for i, r in enumerate(results) if i != 5)
    assert int(rc.get(key)) == 11


def test_redis_unreachable_fails_every_caller_and_the_next_calls_work(rc):
    batcher, key = ScriptBatcher(SCRIPT), f"test:batch:{uuid.uuid4().hex}"
    down = redis.Redis(port=_closed_port(), socket_connect_timeout=1, socket_timeout=1)
    results = _race(8, lambda i: batcher(down, [key], ["x"]))
    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results), results
    # The failed batch left nothing behind: the same batcher serves a working client.
    results = _race(8, lambda i: batcher(rc, [key], ["y"]))
    assert sorted(int(r[0]) for r in results) == list(range(1, 9))


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
