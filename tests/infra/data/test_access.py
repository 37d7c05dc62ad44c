"""Who may talk to the data host: behaviour seen from every other host. Application hosts get
to PostgreSQL and Redis and must log in; any other host does not even get a TCP connection
(the host firewall), and PostgreSQL's pg_hba would refuse it anyway."""
from urllib.parse import urlsplit

import pytest
from conftest import app_env, host_name
from probes import postgres_startup, redis, redis_login, tcp_connect

testinfra_hosts = ["ansible://lb", "ansible://web", "ansible://worker", "ansible://monitoring"]


@pytest.fixture(scope="module")
def credentials(lab_host, inventory):
    """DATABASE_URL and REDIS_URL as the application gets them on the first web host."""
    return app_env(lab_host(inventory["groups"]["web"][0]))


def groups_of(host) -> list[str]:
    return host.ansible.get_variables()["group_names"]


def data_address(inventory, group: str) -> str:
    return inventory["addresses"][inventory["groups"][group][0]]


def is_app_host(host, inventory) -> bool:
    name = host_name(host)
    return any(name in inventory["groups"].get(group, []) for group in ("web", "worker", "beat"))


@pytest.mark.parametrize("group, port", [("postgresql", 5432), ("redis", 6379), ("redis", 26379)])
def test_data_ports_are_closed_to_other_hosts(host, inventory, group, port):
    """From the load balancer (or any host that runs no application code) a TCP connection to
    PostgreSQL or Redis is dropped by data1's firewall: not refused, not open."""
    if is_app_host(host, inventory):
        pytest.skip("application hosts may connect")
    assert tcp_connect(host, data_address(inventory, group), port) == "timeout"


def test_unauthenticated_redis_ping_gets_noauth(host, inventory):
    """An application host that does not log in gets NOAUTH, not PONG."""
    if not is_app_host(host, inventory):
        pytest.skip("only application hosts reach Redis")
    [reply] = redis(host, data_address(inventory, "redis"), 6379, ["PING"])
    assert isinstance(reply, dict) and reply["error"].startswith("NOAUTH"), reply


def test_redis_with_the_application_password_answers_pong(host, inventory, credentials):
    """From a web or worker host the application's credentials log in and PING gets PONG."""
    if not is_app_host(host, inventory):
        pytest.skip("only application hosts use Redis")
    login, pong = redis(host, data_address(inventory, "redis"), 6379,
                        redis_login(credentials["REDIS_URL"]), ["PING"])
    assert (login, pong) == ("OK", "PONG")


def test_postgresql_asks_web_hosts_for_a_scram_password(host, inventory, credentials):
    """From a web or worker host the application user is asked for a SCRAM-SHA-256 password."""
    if not is_app_host(host, inventory):
        pytest.skip("only application hosts use PostgreSQL")
    url = urlsplit(credentials["DATABASE_URL"])
    answer = postgres_startup(host, data_address(inventory, "postgresql"), url.username,
                              url.path.lstrip("/"))
    assert answer.get("authentication") == 10, answer  # AuthenticationSASL
    assert "SCRAM-SHA-256" in answer["mechanisms"]


def test_postgresql_refuses_a_plain_text_session_from_a_web_host(host, inventory, credentials):
    """From a web host the application user without TLS is refused before any password is
    asked: pg_hba admits network sessions in TLS only (hostssl)."""
    if "web" not in groups_of(host):
        pytest.skip("only application hosts use PostgreSQL")
    url = urlsplit(credentials["DATABASE_URL"])
    answer = postgres_startup(host, data_address(inventory, "postgresql"), url.username,
                              url.path.lstrip("/"), tls=False)
    assert answer.get("error", {}).get("C") == "28000", answer  # invalid_authorization_specification
    assert "no encryption" in answer["error"]["M"], answer


def test_pg_hba_refuses_the_application_user_from_a_non_application_address(
        lab_host, inventory, credentials):
    """Behind the firewall, pg_hba has no entry for the application user from an address that
    is not an application host's: data1 connecting to its own private address (which its
    firewall lets through) is refused before any password is asked."""
    data = lab_host(inventory["groups"]["postgresql"][0])
    url = urlsplit(credentials["DATABASE_URL"])
    answer = postgres_startup(data, data_address(inventory, "postgresql"), url.username,
                              url.path.lstrip("/"))
    assert answer.get("error", {}).get("C") == "28000", answer  # invalid_authorization_specification
    assert "pg_hba.conf" in answer["error"]["M"]


# The PostgreSQL cluster's own ports: Patroni's REST API, etcd's client, peer and metrics ports.
# Only the members talk to each other on them; the monitoring hosts scrape two of them.
CLUSTER_PORTS = [("postgresql", 8008, "monitoring"), ("etcd", 2379, None), ("etcd", 2380, None),
                 ("etcd", 2381, "monitoring")]


@pytest.mark.parametrize("group, port, scraped_by", CLUSTER_PORTS)
def test_cluster_ports_are_closed_to_hosts_outside_the_cluster(host, inventory, group, port, scraped_by):
    """From the load balancer, a web host or the monitoring host, Patroni's and etcd's ports are
    dropped by the data host's firewall, except the two /metrics ports Prometheus scrapes."""
    expected = "open" if scraped_by and scraped_by in groups_of(host) else "timeout"
    for member in inventory["groups"][group]:
        assert tcp_connect(host, inventory["addresses"][member], port) == expected, (member, port)
