"""The site's floating address (keepalived, VRRP): on exactly one load balancer, and it moves."""
import pytest
from conftest import LB_URL, lab_session, wait_until

testinfra_hosts = ["ansible://lb"]

FLOATING = LB_URL.split("://", 1)[1].split("/", 1)[0]


def holders(lab_host, inventory) -> list[str]:
    """The lb hosts that have the floating address on an interface now."""
    return [name for name in inventory["groups"]["lb"]
            if f" {FLOATING}/" in lab_host(name).check_output("ip -o -4 addr show")]


def test_keepalived_is_running_and_enabled(host):
    """keepalived runs now and starts at boot."""
    service = host.service("keepalived")
    assert service.is_running
    assert service.is_enabled


def test_the_floating_address_is_on_exactly_one_lb_host(lab_host, inventory):
    """One and only one lb host holds the site's address (two would answer ARP for it)."""
    assert len(holders(lab_host, inventory)) == 1


def test_the_site_answers_on_the_floating_address():
    """The API answers through the floating address."""
    assert lab_session().get(f"{LB_URL}/readyz", timeout=10).status_code == 200


@pytest.fixture
def nginx_stopped_on_the_holder(lab_host, inventory):
    """nginx stopped on the host holding the address; started again afterwards."""
    before = holders(lab_host, inventory)
    assert len(before) == 1, before
    holder = lab_host(before[0])
    holder.run_expect([0], "systemctl stop nginx")
    yield before[0]
    holder.run_expect([0], "systemctl start nginx")


def test_the_address_moves_when_nginx_stops(lab_host, inventory, nginx_stopped_on_the_holder):
    """With nginx stopped on its holder, another lb host takes the address within 5 s and serves."""
    moved = wait_until(lambda: (h := holders(lab_host, inventory)) and h[0] != nginx_stopped_on_the_holder
                       and len(h) == 1, timeout=5, interval=0.2)
    assert moved, holders(lab_host, inventory)
    assert wait_until(lambda: lab_session().get(f"{LB_URL}/readyz", timeout=5).status_code == 200, 10)
