"""The application's Redis user may not administer Redis (CONFIG, FLUSHALL, KEYS, INFO,
SHUTDOWN...; DEBUG is off for every user): an attacker who gets the application's credentials
(synspirit.env on a web host) cannot reconfigure, wipe or stop the server. The suite's Redis
(localstack.sh) gives the application the same rules as the deployment's Redis role, so every
other test proves that the application, Celery, Socket.IO and the rate limits work within
them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
import yaml

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("command", [
    ("CONFIG", "SET", "appendonly", "no"),
    ("CONFIG", "GET", "*"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("INFO", "server"),
    ("CLIENT", "LIST"),
    ("KEYS", "*"),
    ("ACL", "SETUSER", "intruder", "on", ">pw", "+@all"),
    ("MONITOR",),
    ("BGSAVE",),
], ids=lambda c: " ".join(c[:2]))
def test_the_application_may_not_administer_redis(stack_env, redis_admin_url, command):
    app = redis.Redis.from_url(stack_env["REDIS_URL"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.execute_command(*command)
    admin = redis.Redis.from_url(redis_admin_url)
    assert admin.ping() and admin.config_get("appendonly") == {"appendonly": "yes"}


def test_the_application_runs_what_it_needs(stack_env):
    """Keys, scripts, pub/sub and transactions: what Celery, Socket.IO and counting use."""
    app = redis.Redis.from_url(stack_env["REDIS_URL"])
    assert app.eval("return redis.call('INCR', KEYS[1])", 1, "acl:test") >= 1
    with app.pipeline(transaction=True) as pipe:
        pipe.hset("acl:hash", "a", 1).expire("acl:hash", 60).execute()
    assert app.publish("acl:channel", "x") == 0
    assert list(app.scan_iter("acl:*"))
    app.delete("acl:test", "acl:hash")


def test_the_suite_and_the_deployment_give_the_same_rules():
    script = (REPO / "backend/scripts/localstack.sh").read_text()
    [local] = re.findall(r"^REDIS_APP_ACL='([^']*)'$", script, re.M)
    defaults = yaml.safe_load((REPO / "ansible/roles/redis/defaults/main.yml").read_text())
    assert local == defaults["redis_app_acl_rules"]
