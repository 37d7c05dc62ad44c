"""The Socket.IO message queue on Redis: what a web instance or a worker emits reaches the
clients of every web instance. Built here, not by Flask-SocketIO's init_app (which hands only
`redis://` URLs to RedisManager), so that it follows a Sentinel-managed master too."""
from __future__ import annotations

import logging
import time

import socketio
from redis.exceptions import ConnectionError as RedisConnectionError

from ..redis_connect import connect

log = logging.getLogger(__name__)

CHANNEL = "synspirit-socketio"
# A subscription on a master that went silent (host gone, failover) gets no error, only no
# messages: python-socketio's listener blocked on it for good (test_sentinel_failover.py,
# SIGSTOP of the master: Socket.IO emits never arrived again). With a socket timeout its
# blocking read times out on a quiet channel instead: redis-py reconnected it 10 times in 20
# quiet seconds, each time a moment in which emits are lost. Here the listener waits for a
# message at most 1 s at a time, redis-py PINGs every PING_EVERY seconds on a quiet
# subscription, and two PINGs unanswered make it subscribe again, on the master the Sentinels
# name then (0 reconnections in 20 quiet seconds).
PING_EVERY = 2


class RedisQueue(socketio.RedisManager):
    """python-socketio's RedisManager on our Redis client (redis_connect.connect)."""

    def _redis_connect(self):
        self.redis = connect(self.redis_url, socket_timeout=3, socket_connect_timeout=3,
                             health_check_interval=PING_EVERY)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    def _redis_listen_with_retries(self):
        # python-socketio's loop, but waiting for a message with a deadline (see PING_EVERY).
        while True:
            try:
                self._redis_connect()
                pubsub = self.pubsub  # a publish that fails replaces self.pubsub meanwhile
                pubsub.subscribe(self.channel)
                while True:
                    message = pubsub.get_message(timeout=1)
                    if message is not None:
                        yield message
                    elif pubsub.health_check_response_counter > 1:
                        raise RedisConnectionError("PINGs unanswered")
            except Exception as e:  # noqa: BLE001 - whatever happened, subscribe again (upstream)
                log.warning("Socket.IO message queue: %s; subscribing again in 1 s", e)
                time.sleep(1)


def message_queue(redis_url: str) -> RedisQueue:
    """Web instances subscribe on their first client connection; workers never get one, so
    they only publish."""
    return RedisQueue(redis_url, channel=CHANNEL)
