"""PostgreSQL on every data host, run by Patroni: installed, running, listening on the private
address only, the Debian cluster left to Patroni."""
import pytest
from conftest import address_of, listening_addresses

testinfra_hosts = ["ansible://postgresql"]

LOOPBACK = {"127.0.0.1", "::1"}


@pytest.mark.parametrize("package", ["postgresql-15", "patroni", "etcd-server"])
def test_packages_are_installed(host, package):
    """Debian's PostgreSQL server, Patroni and etcd packages are installed."""
    assert host.package(package).is_installed


@pytest.mark.parametrize("unit", ["patroni", "etcd"])
def test_patroni_and_etcd_are_running_and_enabled(host, unit):
    """Patroni (which runs PostgreSQL) and the etcd member run now and start at boot (etcd on
    the hosts of group etcd: all of them unless the inventory says otherwise)."""
    if unit == "etcd" and "etcd" not in host.ansible.get_variables()["group_names"]:
        pytest.skip("not an etcd member")
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


def test_only_patroni_starts_postgresql(host):
    """The Debian cluster's own unit is not enabled and its start.conf is manual: at boot only
    Patroni starts PostgreSQL (two starters would fight over the data folder)."""
    assert not host.service("postgresql@15-main").is_enabled
    assert host.file("/etc/postgresql/15/main/start.conf").content_string.split()[-1] == "manual"


def test_postgresql_listens_on_the_private_address_only(host):
    """Port 5432 is bound to the host's lab address (and maybe loopback), never to all."""
    addresses = listening_addresses(host, 5432)
    assert address_of(host) in addresses
    assert addresses <= LOOPBACK | {address_of(host)}, addresses


def test_postgresql_answers_sql(host):
    """The server answers a query as the postgres superuser over its local socket."""
    with host.sudo("postgres"):
        assert host.check_output("cd /tmp && psql -XAtc 'select 1'") == "1"


def test_pg_rewind_can_work(host):
    """pg_rewind needs data checksums or wal_log_hints: both are on (a new cluster has checksums)."""
    with host.sudo("postgres"):
        settings = host.check_output(
            "cd /tmp && psql -XAtc \"select name, setting from pg_settings "
            "where name in ('data_checksums', 'wal_log_hints') order by name\"")
    assert settings.splitlines() == ["data_checksums|on", "wal_log_hints|on"]


def test_pg_hba_uses_tls_and_scram_for_network_clients(host):
    """Every network line of pg_hba.conf but loopback's is hostssl, and every one authenticates
    with scram-sha-256."""
    with host.sudo("postgres"):
        rules = host.check_output(
            "cd /tmp && psql -XAtc \"select type, address, auth_method from pg_hba_file_rules "
            "where type like 'host%'\"")
    assert rules, "no network rule in pg_hba.conf"
    for line in rules.splitlines():
        kind, address, method = line.split("|")
        assert kind == "hostssl" or address in LOOPBACK, line
        assert method == "scram-sha-256", line


def test_patroni_refuses_an_unsafe_request_without_its_password(host):
    """Patroni's REST API answers health checks to anyone who reaches it, but a restart (an
    unsafe request) without the API's password gets 401."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "base = 'http://%s:8008' % sys.argv[1]\n"
        "print(urllib.request.urlopen(base + '/liveness', timeout=5).status)\n"
        "try:\n"
        "    request = urllib.request.Request(base + '/restart', data=b'{}', method='POST')\n"
        "    urllib.request.urlopen(request, timeout=5)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n")
    assert host.check_output("python3 -c %s %s", script, address_of(host)).split() == ["200", "401"]
