"""A Redis master cut off from the other data hosts: the clients follow the Sentinels' majority,
and a master alone refuses writes with an answer the client can retry.

The lab's chaos run (docs/reliability.md, "primary cut off") lost views when the cut-off host
held the Redis master: its own Sentinel, alone, kept naming it while the others promoted a
replica, and clients that asked it first went on writing there. Here with real Debian
redis-server and redis-sentinel processes: two unrelated masters, the stale one named by one
Sentinel at config-epoch 1, the promoted one by two Sentinels at config-epoch 2 (what a
failover leaves behind), the stale Sentinel first in REDIS_URL."""
from __future__ import annotations

import contextlib
import secrets
import uuid

import pytest
import redis
from sqlalchemy import text

from testkit.processes import Processes, free_port
from testkit.waiting import wait_until

MASTER = "synspirit"


class Sentinels:
    def __init__(self, procs: Processes, directory):
        self.procs, self.dir, self.password = procs, directory, secrets.token_hex(16)

    def _start(self, name: str, lines: list[str], binary: str) -> int:
        port = free_port()
        conf = self.dir / f"{name}-{port}.conf"
        conf.write_text("\n".join([f"port {port}", "bind 127.0.0.1", f"dir {self.dir}",
                                   'save ""', "appendonly no", *lines]) + "\n")
        self.procs.spawn(f"{name}-{port}", [binary, str(conf)])
        client = self.client(port)
        wait_until(client.ping, 10, ignore=(redis.RedisError,))
        return port

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=2)

    def server(self) -> int:
        return self._start("redis", [f"requirepass {self.password}"], "/usr/bin/redis-server")

    def sentinel(self, master: int, epoch: int) -> int:
        # config-epoch as a failover leaves it; down-after and failover-timeout long: nothing
        # here fails over by itself.
        return self._start("redis-sentinel", [
            f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}",
            f"sentinel monitor {MASTER} 127.0.0.1 {master} 1",
            f"sentinel auth-pass {MASTER} {self.password}",
            f"sentinel config-epoch {MASTER} {epoch}",
            f"sentinel down-after-milliseconds {MASTER} 600000",
            f"sentinel failover-timeout {MASTER} 600000",
        ], "/usr/bin/redis-sentinel")

    def url(self, ports: list[int]) -> str:
        return (f"redis+sentinel://:{self.password}@"
                + ",".join(f"127.0.0.1:{port}" for port in ports) + f"/{MASTER}")


@pytest.fixture
def split(tmp_path):
    """(sentinels, stale master, promoted master, [stale sentinel, two majority sentinels])."""
    procs = Processes(tmp_path / "logs")
    try:
        s = Sentinels(procs, tmp_path)
        stale, promoted = s.server(), s.server()
        ports = [s.sentinel(stale, 1), s.sentinel(promoted, 2), s.sentinel(promoted, 2)]
        yield s, stale, promoted, ports
    finally:
        procs.stop()


def _where(s: Sentinels, key: str, *servers: int) -> list[int]:
    return [port for port in servers if s.client(port).exists(key)]


def test_a_client_follows_the_master_of_the_sentinels_majority(split):
    from app.redis_connect import connect

    s, stale, promoted, sentinels = split
    client = connect(s.url(sentinels), socket_timeout=2)
    for _ in range(3):  # and stays there: the stale Sentinel is not asked first again
        key = f"view:{uuid.uuid4().hex}"
        client.set(key, 1)
        assert _where(s, key, stale, promoted) == [promoted]
        client.connection_pool.reset()  # the next command asks the Sentinels again


def test_with_the_majority_away_the_one_sentinel_left_is_believed(split):
    """Availability over the rule: a site with two of three data hosts down still reads and
    writes where the last Sentinel says (its Redis refuses writes alone: min-replicas)."""
    from app.redis_connect import connect

    s, stale, promoted, sentinels = split
    for port in sentinels[1:]:
        with contextlib.suppress(redis.ConnectionError):
            s.client(port).shutdown(nosave=True)
    key = f"view:{uuid.uuid4().hex}"
    connect(s.url(sentinels), socket_timeout=2).set(key, 1)
    assert _where(s, key, stale, promoted) == [stale]


@pytest.fixture
def suite_redis(redis_admin_url):
    """The suite's Redis as its admin; min-replicas-to-write back to 0 (off) after the test."""
    client = redis.Redis.from_url(redis_admin_url)
    try:
        yield client
    finally:
        client.config_set("min-replicas-to-write", 0)


def test_a_master_that_refuses_writes_gets_a_retryable_answer_and_nothing_half_done(
        api, register_user, suite_redis, db):
    """NOREPLICAS is "not now" (503 with Retry-After and a JSON error body), never a 500; a
    read stays available; what was refused is not half stored; all works again after."""
    author, token = register_user("noreplicas")
    post = api.create("post", token)
    # A master that no replica acknowledges, as the Redis role sets it up (several data hosts).
    suite_redis.config_set("min-replicas-to-write", 1)
    title = f"refused {uuid.uuid4().hex}"
    answers = {
        # Flask-Limiter counts logins in Redis before the password is checked.
        "login": api.post("/api/auth/login", json={"username": author["username"],
                                                   "password": "correct-horse"}),
        "create": api.post("/api/posts", token=token, json={"title": title,
                                                           "content": "refused"}),
        "read": api.get(f"/api/posts/{post['id']}"),
    }
    statuses = {kind: r.status_code for kind, r in answers.items()}
    assert 500 not in statuses.values(), statuses
    assert answers["read"].status_code == 200
    refused = {kind: r for kind, r in answers.items() if r.status_code == 503}
    assert refused, f"no write was refused: {statuses}"
    for r in refused.values():
        assert r.json()["error"]["code"] == "unavailable" and r.headers["Retry-After"]
    if "create" in refused:
        assert db.execute(text("SELECT count(*) FROM posts WHERE title = :t"),
                          {"t": title}).scalar() == 0
    suite_redis.config_set("min-replicas-to-write", 0)
    again = api.post("/api/posts", token=token, json={"title": title, "content": "taken"})
    assert again.status_code == 201, again.text
