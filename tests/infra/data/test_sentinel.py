"""Redis Sentinel on the redis hosts: one master, the others its replicas, the Sentinels agreeing
on it, every door locked with the deployment's Redis password."""
from urllib.parse import unquote

import pytest
from conftest import INVENTORY, address_of, app_env, wait_until
from probes import redis

testinfra_hosts = ["ansible://redis"]

SENTINEL_PORT = 26379
MASTER_NAME = "synspirit"


@pytest.fixture(scope="module")
def password(lab_host, inventory) -> str:
    """The deployment's Redis password, as the application has it."""
    env = app_env(lab_host(inventory["groups"]["web"][0]))
    # redis://:PASSWORD@HOST:PORT/DB or redis+sentinel://:PASSWORD@HOST:PORT,.../NAME
    return unquote(env["REDIS_URL"].split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1])


@pytest.fixture(scope="module")
def admin_login() -> list[str]:
    """AUTH as Redis's admin user (INFO and REPLICAOF are not the application's to run)."""
    return ["AUTH", "admin", (INVENTORY.parent / "secrets/redis_admin_password.txt").read_text().split()[0]]


def sentinel(host, password: str, *command: str, address: str | None = None):
    """A Sentinel command sent from `host` to its own Sentinel (at `address`, default the
    testinfra host's), logged in."""
    login, reply = redis(host, address or address_of(host), SENTINEL_PORT, ["AUTH", password], list(command))
    assert login == "OK", login
    return reply


def as_dict(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def test_sentinel_is_running_and_enabled(host):
    """redis-sentinel runs now and starts at boot."""
    service = host.service("redis-sentinel")
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("unit", ["redis-server", "redis-sentinel"])
def test_redis_and_sentinel_start_at_boot(host, unit):
    """multi-user.target wants both units (what starts them after a power loss; an alias link
    alone makes `systemctl is-enabled` say enabled while nothing starts the unit)."""
    assert unit + ".service" in host.check_output("systemctl show -P Wants multi-user.target").split()


def test_sentinel_asks_for_the_password(host):
    """A Sentinel client that does not log in gets NOAUTH (it would otherwise learn, or change,
    which instance is the master)."""
    [reply] = redis(host, address_of(host), SENTINEL_PORT, ["SENTINEL", "MASTERS"])
    assert isinstance(reply, dict) and reply["error"].startswith("NOAUTH"), reply


def test_every_sentinel_names_the_same_master_among_the_redis_hosts(host, lab_host, inventory, password):
    """Each host's Sentinel gives the same master address, that of a redis host."""
    addresses = {inventory["addresses"][h] for h in inventory["groups"]["redis"]}
    mine = sentinel(host, password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
    assert mine[0] in addresses
    for other in inventory["groups"]["redis"]:
        theirs = sentinel(lab_host(other), password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME,
                          address=inventory["addresses"][other])
        assert theirs == mine, other


def test_sentinels_see_each_other_and_a_majority_quorum(host, inventory, password):
    """Each Sentinel knows the other Sentinels and every replica; the quorum is a majority."""
    n = len(inventory["groups"]["redis"])
    master = as_dict(sentinel(host, password, "SENTINEL", "MASTER", MASTER_NAME))
    assert wait_until(lambda: int(as_dict(sentinel(host, password, "SENTINEL", "MASTER", MASTER_NAME))
                                  ["num-other-sentinels"]) == n - 1, 15), master
    assert int(master["num-slaves"]) == n - 1
    assert int(master["quorum"]) == n // 2 + 1
    assert "s_down" not in master["flags"] and "o_down" not in master["flags"], master["flags"]


def test_the_instance_has_the_role_sentinel_gives_it(host, password, admin_login):
    """The master Sentinel names says it is master; every other instance replicates it, link up."""
    master = sentinel(host, password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[0]
    _, info = redis(host, address_of(host), 6379, admin_login, ["INFO", "replication"])
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    if master == address_of(host):
        assert fields["role"] == "master"
    else:
        replica = (fields["role"], fields["master_host"], fields["master_link_status"])
        assert replica == ("slave", master, "up")


def test_a_write_on_the_master_reaches_every_replica(host, lab_host, inventory, password):
    """A key written on the master is readable on this host's instance within seconds."""
    master = sentinel(host, password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[0]
    key, value = f"lab:replication:{address_of(host)}", "written-on-the-master"
    redis(host, master, 6379, ["AUTH", password], ["SET", key, value, "EX", "60"])
    def replicated():
        return redis(host, address_of(host), 6379, ["AUTH", password], ["GET", key])[1] == value
    assert wait_until(replicated, 10)


def test_sentinel_takes_the_admin_user(host, admin_login):
    """Operators and the redis exporter log in to Sentinel as admin, as to the instances (the
    exporter has one login for both; Prometheus's redis-sentinel job reads Sentinel with it)."""
    login, masters = redis(host, address_of(host), SENTINEL_PORT, admin_login, ["SENTINEL", "MASTERS"])
    assert login == "OK", login
    assert isinstance(masters, list) and masters, masters
    wrong = ["AUTH", "admin", "not-" + admin_login[2]]
    [reply] = redis(host, address_of(host), SENTINEL_PORT, wrong)
    assert isinstance(reply, dict) and reply["error"].startswith("WRONGPASS"), reply
