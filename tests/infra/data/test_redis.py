"""Redis on the data host: installed, running, bound to the private address, durable, and a
master alone refuses writes."""
import pytest
from conftest import address_of, app_env, listening_addresses
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
