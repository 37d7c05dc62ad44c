"""Who may talk to the data host: behaviour seen from the load balancer and the web hosts."""
from urllib.parse import urlsplit

import pytest
from conftest import app_env
from probes import postgres_startup, redis, redis_login

testinfra_hosts = ["ansible://lb", "ansible://web"]


@pytest.fixture(scope="module")
def credentials(lab_host, inventory):
    """DATABASE_URL and REDIS_URL as the application gets them on the first web host."""
    return app_env(lab_host(inventory["groups"]["web"][0]))


def groups_of(host) -> list[str]:
    return host.ansible.get_variables()["group_names"]


def data_address(inventory, group: str) -> str:
    return inventory["addresses"][inventory["groups"][group][0]]


def test_unauthenticated_redis_ping_gets_noauth(host, inventory):
    """A client that does not log in gets NOAUTH, not PONG."""
    [reply] = redis(host, data_address(inventory, "redis"), 6379, ["PING"])
    assert isinstance(reply, dict) and reply["error"].startswith("NOAUTH"), reply


def test_redis_with_the_application_password_answers_pong(host, inventory, credentials):
    """From a web host the application's credentials log in and PING gets PONG."""
    if "web" not in groups_of(host):
        pytest.skip("only application hosts use Redis")
    login, pong = redis(host, data_address(inventory, "redis"), 6379,
                        redis_login(credentials["REDIS_URL"]), ["PING"])
    assert (login, pong) == ("OK", "PONG")


def test_postgresql_refuses_the_application_user_from_the_load_balancer(host, inventory, credentials):
    """pg_hba has no entry for the application user from lb1: refused before any password."""
    if "lb" not in groups_of(host):
        pytest.skip("checked from the load balancer")
    url = urlsplit(credentials["DATABASE_URL"])
    answer = postgres_startup(host, data_address(inventory, "postgresql"), url.username,
                              url.path.lstrip("/"))
    assert answer.get("error", {}).get("C") == "28000", answer  # invalid_authorization_specification
    assert "pg_hba.conf" in answer["error"]["M"]


def test_postgresql_asks_web_hosts_for_a_scram_password(host, inventory, credentials):
    """From a web host the application user is asked for a SCRAM-SHA-256 password."""
    if "web" not in groups_of(host):
        pytest.skip("only application hosts use PostgreSQL")
    url = urlsplit(credentials["DATABASE_URL"])
    answer = postgres_startup(host, data_address(inventory, "postgresql"), url.username,
                              url.path.lstrip("/"))
    assert answer.get("authentication") == 10, answer  # AuthenticationSASL
    assert "SCRAM-SHA-256" in answer["mechanisms"]
