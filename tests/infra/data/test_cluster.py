"""The PostgreSQL cluster as a whole (Patroni over the `postgresql` group, etcd as its store):
one leader, a synchronous standby, every replica streaming, a write on the primary seen on the
replicas, replicas refusing writes, and the application reaching the primary."""
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import app_env, wait_until

testinfra_hosts = []  # cluster-wide checks: each test picks its hosts from the inventory


def sql(host, query: str, database: str = "postgres") -> list[list[str]]:
    """Rows of `query` run as postgres over the local socket (psql -At)."""
    out = host.check_output("cd /tmp && runuser -u postgres -- psql -XAt -F '|' -d %s -c %s",
                            database, query)
    return [line.split("|") for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def cluster(lab_host, inventory) -> dict:
    """patronictl list as JSON (read from etcd) on the first member, plus who is what."""
    members = json.loads(lab_host(inventory["groups"]["postgresql"][0]).check_output(
        "patronictl -c /etc/patroni/config.yml list --format json"))
    leader = [m["Member"] for m in members if m["Role"] == "Leader"]
    return {"members": members, "leaders": leader,
            "replicas": [m["Member"] for m in members if m["Role"] != "Leader"]}


def test_every_member_is_in_the_cluster(cluster, inventory):
    """Patroni knows exactly the inventory's PostgreSQL hosts, each running."""
    assert sorted(m["Member"] for m in cluster["members"]) == inventory["groups"]["postgresql"]
    assert all(m["State"] in ("running", "streaming") for m in cluster["members"]), cluster["members"]


def test_exactly_one_leader(cluster):
    """One member, and only one, holds the leader lock."""
    assert len(cluster["leaders"]) == 1, cluster["members"]


def test_a_synchronous_standby_is_named(cluster, inventory):
    """With two members or more, one replica is the synchronous standby: a commit is
    acknowledged only once it is on its disk too."""
    if len(inventory["groups"]["postgresql"]) < 2:
        pytest.skip("a single member has no standby")
    roles = sorted(m["Role"] for m in cluster["members"])
    assert roles.count("Sync Standby") == 1, cluster["members"]


def test_every_replica_streams_from_the_primary(cluster, lab_host, inventory):
    """pg_stat_replication on the primary lists every other member as streaming, one of them
    synchronously."""
    primary = lab_host(cluster["leaders"][0])
    rows = sql(primary, "select application_name, state, sync_state from pg_stat_replication")
    assert sorted(r[0] for r in rows) == sorted(cluster["replicas"]), rows
    assert all(r[1] == "streaming" for r in rows), rows
    if cluster["replicas"]:
        assert [r[2] for r in rows].count("sync") == 1, rows


def test_a_write_on_the_primary_is_read_on_every_replica(cluster, lab_host):
    """A row written on the primary is found on each replica (within seconds)."""
    if not cluster["replicas"]:
        pytest.skip("no replica")
    token = secrets.token_hex(8)
    primary = lab_host(cluster["leaders"][0])
    sql(primary, "create table if not exists ha_probe (token text primary key, at timestamptz default now())")
    sql(primary, f"insert into ha_probe (token) values ('{token}')")
    query = f"select count(*) from ha_probe where token = '{token}'"
    for name in cluster["replicas"]:
        replica = lab_host(name)
        seen = wait_until(lambda r=replica: sql(r, query) == [["1"]], 10, 0.2)
        assert seen, f"{token} not on {name} after 10 s"
    sql(primary, f"delete from ha_probe where token = '{token}'")


def test_a_replica_refuses_writes(cluster, lab_host):
    """A write sent to a replica fails: read-only transaction (SQLSTATE 25006)."""
    if not cluster["replicas"]:
        pytest.skip("no replica")
    replica = lab_host(cluster["replicas"][0])
    result = replica.run("cd /tmp && runuser -u postgres -- psql -XAt -v ON_ERROR_STOP=1 -c %s",
                         "create table ha_refused (x int)")
    assert result.rc != 0
    assert "read-only transaction" in result.stderr


def test_etcd_has_every_member_and_a_leader(lab_host, inventory):
    """Every etcd member is started and healthy, and the cluster has a leader."""
    host = lab_host(inventory["groups"]["etcd"][0])
    members = host.check_output("synspirit-etcdctl member list").splitlines()
    assert sorted(line.split(", ")[2] for line in members) == inventory["groups"]["etcd"]
    assert all(line.split(", ")[1] == "started" for line in members), members
    status = json.loads(host.check_output("synspirit-etcdctl endpoint status --cluster -w json"))
    leaders = {s["Status"]["leader"] for s in status}
    assert len(status) == len(inventory["groups"]["etcd"]) and len(leaders) == 1, status


def test_the_application_is_given_every_member_and_lands_on_the_primary(cluster, lab_host, inventory):
    """DATABASE_URL names every member with target_session_attrs=read-write, and a connection
    made with it from a web host (the application's own driver) reaches the primary."""
    web = lab_host(inventory["groups"]["web"][0])
    url = app_env(web)["DATABASE_URL"]
    query = parse_qs(urlsplit(url).query)
    members = [inventory["addresses"][m] for m in inventory["groups"]["postgresql"]]
    assert sorted(h.rsplit(":", 1)[0] for h in query["host"]) == sorted(members)
    assert query["target_session_attrs"] == ["read-write"]
    script = ("import sys, sqlalchemy\n"
              "e = sqlalchemy.create_engine(sys.argv[1])\n"
              "with e.connect() as c:\n"
              "    print(c.exec_driver_sql('select inet_server_addr(), pg_is_in_recovery()').one())\n")
    out = web.check_output("/opt/synspirit/venv/bin/python -c %s %s", script, url)
    assert out == f"('{inventory['addresses'][cluster['leaders'][0]]}', False)"


# Patroni's own etcd v3 client, as Patroni calls it to renew the leader key, under a name that is
# no member's: it must not take the key from the leader. Patroni 3.0.2 put the key
# unconditionally, and a former primary took the lock back after a network partition
# (roles/postgresql/tasks/install.yml; docs/reliability.md).
RENEW_AS_ANOTHER = """
import json, sys
from patroni.dcs.etcd3 import Etcd3
dcs = Etcd3({'hosts': sys.argv[1].split(','), 'scope': '15-main', 'namespace': '/synspirit/',
             'name': 'not-a-member', 'ttl': 15, 'retry_timeout': 5, 'loop_wait': 5,
             'protocol': 'https', 'cacert': '/etc/ssl/synspirit/ca.crt',
             'cert': '/etc/ssl/synspirit/host.crt', 'key': '/etc/ssl/private/synspirit-host.key'})
print(json.dumps(bool(dcs._update_leader())))
"""


def test_a_member_that_is_not_the_leader_cannot_renew_the_leader_key(cluster, lab_host, inventory):
    replica = lab_host(cluster["replicas"][0])
    leader_key = "synspirit-etcdctl get --print-value-only /synspirit/15-main/leader"
    hosts = ",".join(f"{inventory['addresses'][m]}:2379" for m in inventory["groups"]["etcd"])
    renewed = replica.check_output("python3 -c %s %s", RENEW_AS_ANOTHER, hosts)
    assert json.loads(renewed.splitlines()[-1]) is False
    assert replica.check_output(leader_key) == cluster["leaders"][0]
