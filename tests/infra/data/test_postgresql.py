"""PostgreSQL on the data host: installed, running, listening on the private address only."""
import pytest
from conftest import address_of, listening_addresses

testinfra_hosts = ["ansible://postgresql"]

LOOPBACK = {"127.0.0.1", "::1"}


def test_postgresql_is_installed(host):
    """Debian's PostgreSQL server package (postgresql-NN) is installed."""
    assert host.package("postgresql-15").is_installed


@pytest.mark.parametrize("unit", ["postgresql"])
def test_postgresql_is_running_and_enabled(host, unit):
    """PostgreSQL runs now and starts at boot."""
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


def test_postgresql_listens_on_the_private_address_only(host):
    """Port 5432 is bound to the host's lab address (and maybe loopback), never to all."""
    addresses = listening_addresses(host, 5432)
    assert address_of(host) in addresses
    assert addresses <= LOOPBACK | {address_of(host)}, addresses


def test_postgresql_answers_sql(host):
    """The server answers a query as the postgres superuser over its local socket."""
    with host.sudo("postgres"):
        assert host.check_output("psql -XAtc 'select 1'") == "1"


def test_pg_hba_uses_scram_for_network_clients(host):
    """Every network (host*) line of pg_hba.conf authenticates with scram-sha-256."""
    with host.sudo("postgres"):
        rules = host.check_output(
            "psql -XAtc \"select type, auth_method from pg_hba_file_rules where type like 'host%'\"")
    assert rules, "no network rule in pg_hba.conf"
    for line in rules.splitlines():
        kind, method = line.split("|")
        assert method in ("scram-sha-256", "reject"), line
