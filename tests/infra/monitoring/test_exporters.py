"""Exporters: each runs on the hosts whose service it reads, listens on the private address
only, and is absent elsewhere; nginx's stub_status answers on loopback only."""
import pytest
from conftest import address_of, host_name, listening_addresses, worker_hosts
from monitoring_api import deployment
from probes import tcp_connect

testinfra_hosts = ["ansible://all"]

# (Debian package = unit, key in synspirit_exporter_ports, inventory group of its hosts)
EXPORTERS = [
    ("prometheus-node-exporter", "node", "all"),
    ("prometheus-postgres-exporter", "postgresql", "postgresql"),
    ("prometheus-redis-exporter", "redis", "redis"),
    ("prometheus-nginx-exporter", "nginx", "lb"),
]
STUB_STATUS_PORT = 8080  # roles/nginx defaults: nginx_stub_status_port


def runs_here(host, group: str) -> bool:
    return group == "all" or group in host.ansible.get_variables()["group_names"]


@pytest.mark.parametrize("unit, port_key, group", EXPORTERS, ids=[e[0] for e in EXPORTERS])
def test_exporter_runs_where_its_service_is_and_nowhere_else(host, unit, port_key, group):
    """On the group's hosts the exporter runs and is enabled; on others it neither runs nor
    starts at boot. (The lab's hosts share one image with every role's packages, left disabled:
    tests/lab/lib/image.sh; so "not installed" is not what is checked.)"""
    service = host.service(unit)
    if runs_here(host, group):
        assert service.is_running and service.is_enabled
    else:
        assert not service.is_running and not service.is_enabled


@pytest.mark.parametrize("unit, port_key, group", EXPORTERS, ids=[e[0] for e in EXPORTERS])
def test_exporter_listens_on_the_private_address_only(host, unit, port_key, group):
    """Its port is bound to the host's private address, never to all addresses."""
    port = deployment()["synspirit_exporter_ports"][port_key]
    addresses = listening_addresses(host, port)
    if runs_here(host, group):
        assert addresses == {address_of(host)}, addresses
    else:
        assert not addresses, addresses


def test_metrics_ports_let_in_the_monitoring_hosts_only(host, inventory, lab_host):
    """The firewall: the monitoring host reaches this host's exporter and worker metrics ports;
    another host of the deployment finds them dropped."""
    d = deployment()
    ports = [d["synspirit_exporter_ports"][key] for unit, key, group in EXPORTERS
             if runs_here(host, group)]
    if host_name(host) in worker_hosts(inventory):
        ports += list(d["synspirit_worker_metrics_ports"].values())
    monitoring = lab_host(inventory["groups"]["monitoring"][0])
    other_name = next(h for h in inventory["groups"]["lb"] + inventory["groups"]["postgresql"]
                      if h != host_name(host))
    other = lab_host(other_name)
    for port in ports:
        assert tcp_connect(monitoring, address_of(host), port) == "open", port
        assert tcp_connect(other, address_of(host), port) == "timeout", (other_name, port)


def test_redis_exporter_settings_are_not_world_readable(lab_host, inventory):
    """The Redis exporter's settings hold the Redis password: root and prometheus only."""
    for name in inventory["groups"]["redis"]:
        settings = lab_host(name).file("/etc/default/prometheus-redis-exporter")
        assert (settings.user, settings.group, settings.mode) == ("root", "prometheus", 0o640)


def test_stub_status_answers_on_loopback_only(lab_host, inventory):
    """The load balancer's stub_status serves nginx's counters on 127.0.0.1 and nowhere else."""
    other = lab_host(inventory["groups"]["monitoring"][0])
    for name in inventory["groups"]["lb"]:
        lb = lab_host(name)
        assert listening_addresses(lb, STUB_STATUS_PORT) == {"127.0.0.1"}
        page = lb.check_output(
            "python3 -c \"import urllib.request as u;"
            f" print(u.urlopen('http://127.0.0.1:{STUB_STATUS_PORT}/stub_status').read().decode())\"")
        assert page.startswith("Active connections:"), page
        # From another host (the monitoring host) the port is closed.
        address = inventory["addresses"][name]
        probe = other.run(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/{STUB_STATUS_PORT}'")
        assert probe.rc != 0
