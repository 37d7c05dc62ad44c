"""Group commit for one Redis script: the calls in flight in one process share a round trip.

Every read of a post or article runs one Lua script (counting.view_and_read). Under load a
gevent web worker has many reads waiting on Redis at once; sending each on its own costs a
`send` and a `recv` system call and a pool checkout per read, which was the largest share of
a read in `make bench`'s profile (docs/performance.md). Here the first caller becomes the
leader: it sends the scripts of every call queued so far as one pipeline, hands each caller
its own reply, and passes the lead to the first call that queued up meanwhile. Each call still
runs its own script once, so counts stay exact; a lone call costs what it did before.
"""
from __future__ import annotations

import hashlib
import threading
import weakref

import redis.exceptions


class _Call:
    __slots__ = ("keys", "args", "result", "error", "done", "lead", "wake")

    def __init__(self, keys, args):
        self.keys, self.args = keys, args
        self.result = self.error = None
        self.done = self.lead = False
        self.wake = threading.Event()  # gevent's Event in a monkey-patched worker


class ScriptBatcher:
    """Runs one Lua script for many concurrent callers of one Redis client, pipelined."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._lock = threading.Lock()
        self._queues: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.round_trips = 0  # pipelines sent (tests read it)

    def __call__(self, client, keys: list, args: list):
        call = _Call(keys, args)
        with self._lock:
            state = self._queues.get(client)
            if state is None:
                state = self._queues[client] = {"queue": [], "active": False}
            state["queue"].append(call)
            if not state["active"]:
                state["active"] = call.lead = True
        if not call.lead:
            # Woken with its reply, or to lead the next batch. The leader's Redis call is
            # bounded by the client's socket timeout and it wakes everyone even when it fails.
            call.wake.wait()
        if call.lead:
            self._lead(client, state)
        if call.error is not None:
            raise call.error
        return call.result

    def _lead(self, client, state) -> None:
        with self._lock:
            batch, state["queue"] = state["queue"], []
        error = None
        try:
            self._run(client, batch)
        except (redis.exceptions.RedisError, OSError) as e:  # every caller gets it
            error = e
        finally:  # also when the leader is killed: nobody is left waiting
            for call in batch:
                if not call.done:
                    call.error = error or redis.exceptions.ConnectionError(
                        "the batched Redis call was interrupted")
                    call.done = True
            with self._lock:
                if state["queue"]:
                    nxt = state["queue"][0]
                    nxt.lead = True
                    nxt.wake.set()
                else:
                    state["active"] = False
            for call in batch:
                call.wake.set()

    def _run(self, client, batch: list) -> None:
        todo = batch
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            for call in todo:
                pipe.execute_command("EVALSHA", self.sha, len(call.keys), *call.keys, *call.args)
            self.round_trips += 1
            replies = pipe.execute(raise_on_error=False)
            missing = []
            for call, reply in zip(todo, replies, strict=True):
                if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
                    missing.append(call)  # not run at all: safe to send again
                elif isinstance(reply, Exception):
                    call.error, call.done = reply, True
                else:
                    call.result, call.done = reply, True
            if not missing:
                return
            client.script_load(self.source)  # Redis restarted or flushed its scripts
            todo = missing
