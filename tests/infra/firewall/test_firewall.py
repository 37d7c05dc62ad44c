"""The host firewall (nftables, role `firewall`): seen from outside the deployment (this
controller, which stands for the Internet) only the load balancer's HTTP/HTTPS and SSH answer;
inside, each tier reaches only the next one."""
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import address_of, host_name, web_ports
from probes import tcp_connect

testinfra_hosts = ["ansible://all"]

# Every port a SynSpirit host may listen on, whatever its role.
SERVICE_PORTS = [80, 443, 5432, 6379, 8000, 8001]


def outside_connect(address: str, port: int, timeout: float = 1.5) -> str:
    try:
        socket.create_connection((address, port), timeout).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"


def test_nftables_is_enabled_and_drops_by_default(host):
    """The rule set is loaded now and at boot, and its input policy is drop."""
    service = host.service("nftables")
    assert service.is_enabled
    ruleset = host.check_output("nft list chain inet filter input")
    assert "policy drop" in ruleset


def test_only_the_load_balancer_answers_from_outside(host, inventory):
    """From the controller: 80 and 443 on the load balancer, nothing else on any host; a dropped
    port times out (it is not merely closed)."""
    name = host_name(host)
    expected_open = {80, 443} if name in inventory["groups"]["lb"] else set()
    with ThreadPoolExecutor(len(SERVICE_PORTS)) as pool:  # each dropped port waits its timeout
        seen = dict(zip(SERVICE_PORTS, pool.map(lambda p: outside_connect(address_of(host), p),
                                                SERVICE_PORTS), strict=True))
    assert {p for p, state in seen.items() if state == "open"} == expected_open, seen
    assert all(state == "timeout" for p, state in seen.items() if p not in expected_open), seen


def test_ssh_answers_from_outside(host):
    """Operators (and Ansible) still get in."""
    assert outside_connect(address_of(host), 22) == "open"


def test_web_instances_are_reached_by_the_load_balancer_only(host, inventory, lab_host):
    """Each gunicorn instance accepts the load balancer and nobody else (data1 stands in for
    any other host)."""
    if host_name(host) not in inventory["groups"]["web"]:
        pytest.skip("web hosts only")
    lb = lab_host(inventory["groups"]["lb"][0])
    other = lab_host(inventory["groups"]["postgresql"][0])
    for port in web_ports(host):
        assert tcp_connect(lb, address_of(host), port) == "open", port
        assert tcp_connect(other, address_of(host), port) == "timeout", port
