"""Which Socket.IO connections each signed-in user holds, kept in Redis so that any web
instance can close them all (a ban): python-socketio's disconnect of a connection held by
another instance goes to that instance over the message queue."""
from __future__ import annotations

import logging

import redis.exceptions

from ..extensions import redis_client, socketio

log = logging.getLogger(__name__)
# Kept a day past a token's longest life: a key whose connections all ended without their
# disconnect handler running (a web instance killed) does not outlive them long.
TTL = 2 * 86400


def _key(user_id: int) -> str:
    return f"synspirit:sio:user:{user_id}"


def opened(user_id: int, sid: str) -> None:
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.sadd(_key(user_id), sid).expire(_key(user_id), TTL).execute()
    except (redis.exceptions.RedisError, OSError) as e:
        # Redis away: the connection works (its emits need Redis anyway); a ban would miss it.
        log.warning("connection %s of user %s not recorded: %s", sid, user_id, e)


def closed(user_id: int, sid: str) -> None:
    try:
        redis_client().srem(_key(user_id), sid)
    except (redis.exceptions.RedisError, OSError) as e:
        log.warning("connection %s of user %s not forgotten: %s", sid, user_id, e)


def close_all(user_id: int) -> int:
    """Close every Socket.IO connection of this user, on whichever web instance holds it."""
    sids = redis_client().smembers(_key(user_id))
    for sid in sids:
        socketio.server.disconnect(sid.decode() if isinstance(sid, bytes) else sid,
                                   namespace="/")
    return len(sids)
