"""Redis on the data host: installed, running, bound to the private address, durable, a master
alone refuses writes, and the application's user may not administer it."""
import pytest
from conftest import INVENTORY, address_of, app_env, listening_addresses
from probes import redis, redis_login

testinfra_hosts = ["ansible://redis"]

LOOPBACK = {"127.0.0.1", "::1"}


def test_redis_is_installed(host):
    """Debian's redis-server package is installed."""
    assert host.package("redis-server").is_installed


def test_redis_is_running_and_enabled(host):
    """redis-server runs now and starts at boot."""
    service = host.service("redis-server")
    assert service.is_running
    assert service.is_enabled


def test_redis_listens_on_the_private_address_only(host):
    """Port 6379 is bound to the host's lab address (and maybe loopback), never to all."""
    addresses = listening_addresses(host, 6379)
    assert address_of(host) in addresses
    assert addresses <= LOOPBACK | {address_of(host)}, addresses


@pytest.mark.parametrize("directive, value", [
    ("appendonly", "yes"),
    ("appendfsync", "everysec"),
    ("maxmemory-policy", "noeviction"),
    # A master alone (three redis hosts) refuses writes: chaos "pg-partition" checks the effect.
    ("min-replicas-to-write", "1"),
    ("min-replicas-max-lag", "3"),
])
def test_redis_runs_with_the_durable_settings(host, lab_host, inventory, directive, value):
    """The running server has the durability settings (asked with the application's password)."""
    url = app_env(lab_host(inventory["groups"]["web"][0]))["REDIS_URL"]
    login, reply = redis(host, address_of(host), 6379, redis_login(url), ["CONFIG", "GET", directive])
    assert login == "OK"
    if isinstance(reply, dict) and reply.get("error", "").startswith("NOPERM"):
        # The application's ACL user may not run CONFIG: read the configuration files instead.
        conf = host.check_output("cat /etc/redis/*.conf /etc/redis/*/*.conf 2>/dev/null || true")
        lines = {tuple(line.split(None, 1)) for line in conf.splitlines() if line and line[0] != "#"}
        assert (directive, value) in lines
    else:
        assert reply == [directive, value]


def _secret(name: str) -> str:
    return (INVENTORY.parent / f"secrets/{name}.txt").read_text().split()[0]


# Each harmless were it allowed (the same value set again, an unused database, a pattern that
# matches nothing): on a Redis without users they run, and this test fails without harm.
@pytest.mark.parametrize("command", [
    ["CONFIG", "SET", "appendonly", "yes"],
    ["CONFIG", "GET", "requirepass"],
    ["FLUSHALL", "ASYNC"],
    ["INFO", "server"],
    ["CLIENT", "LIST"],
    ["KEYS", "no-such-key-*"],
    ["ACL", "LIST"],
    ["MONITOR"],
], ids=lambda c: " ".join(c[:2]))
def test_the_application_may_not_administer_redis(host, lab_host, inventory, command):
    """With the credentials of the application (REDIS_URL on a web host) Redis answers NOPERM to
    what administers the server, and still serves what the application does."""
    url = app_env(lab_host(inventory["groups"]["web"][0]))["REDIS_URL"]
    if command == ["FLUSHALL", "ASYNC"]:
        command = ["FLUSHDB", "ASYNC"]
        login, _, reply = redis(host, address_of(host), 6379, redis_login(url), ["SELECT", "15"], command)
    else:
        login, reply = redis(host, address_of(host), 6379, redis_login(url), command)
    assert login == "OK"
    assert isinstance(reply, dict) and reply["error"].startswith("NOPERM"), reply
    key = f"lab:acl:{address_of(host)}"
    _, script, gone = redis(host, address_of(host), 6379, redis_login(url),
                            ["EVAL", "return redis.call('INCR', KEYS[1])", "1", key], ["DEL", key])
    # A replica answers READONLY to the write: the right to run it is what is checked here.
    assert script == 1 or str(script.get("error", "")).startswith("READONLY"), script


def test_the_default_user_needs_the_password_and_admin_is_another_user(host):
    """No password, a wrong one: refused. The admin user (the exporter, backups, the operator)
    may CONFIG; the replication user may only replicate."""
    address = address_of(host)
    [reply] = redis(host, address, 6379, ["PING"])
    assert reply["error"].startswith("NOAUTH"), reply
    [reply] = redis(host, address, 6379, ["AUTH", "not-the-password"])
    assert reply["error"].startswith("WRONGPASS"), reply
    login, reply = redis(host, address, 6379, ["AUTH", "admin", _secret("redis_admin_password")],
                         ["CONFIG", "GET", "maxmemory-policy"])
    assert (login, reply) == ("OK", ["maxmemory-policy", "noeviction"])
    login, reply = redis(host, address, 6379, ["AUTH", "replica", _secret("redis_replication_password")],
                         ["GET", "anything"])
    assert login == "OK" and reply["error"].startswith("NOPERM"), reply


def test_the_admin_password_is_not_on_the_application_hosts(lab_host, inventory):
    """A web or worker host holds the application's Redis password only: no file under /etc or
    /opt/synspirit there has the admin password."""
    admin = _secret("redis_admin_password")
    for name in set(inventory["groups"]["web"]) | set(inventory["groups"].get("worker", [])):
        if name in inventory["groups"].get("redis", []):
            continue
        found = lab_host(name).run("grep -rlF -- %s /etc /opt/synspirit", admin)
        assert found.rc == 1 and not found.stdout, (name, found.stdout)
