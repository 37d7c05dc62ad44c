"""Celery workers where the inventory puts them: on every worker host and on the web hosts that
keep theirs (synspirit_run_workers), nowhere else; a worker host runs nothing but workers."""
import pytest
from conftest import address_of, host_name, listening_addresses, worker_hosts

testinfra_hosts = ["ansible://web", "ansible://worker"]

PROFILES = ["io", "cpu"]  # the lab's profiles: the synspirit role's defaults
METRICS_PORTS = {"io": 9810, "cpu": 9811}  # group_vars/all/deployment.yml


@pytest.fixture
def runs_workers(host, inventory) -> bool:
    return host_name(host) in worker_hosts(inventory)


@pytest.mark.parametrize("profile", PROFILES)
def test_workers_run_where_the_inventory_says(host, runs_workers, profile):
    """synspirit-worker@PROFILE runs and starts at boot on a host that runs workers; on a web
    host that only serves it neither runs nor is enabled."""
    service = host.service(f"synspirit-worker@{profile}")
    assert service.is_running == runs_workers
    assert service.is_enabled == runs_workers


@pytest.mark.parametrize("profile", PROFILES)
def test_worker_metrics_listen_on_the_host_address_only(host, runs_workers, profile):
    """Each worker serves its task metrics on the host's private address (for Prometheus)."""
    if not runs_workers:
        pytest.skip("no workers on this host")
    assert listening_addresses(host, METRICS_PORTS[profile]) == {address_of(host)}


@pytest.mark.parametrize("profile", PROFILES)
def test_workers_run_as_the_service_user(host, runs_workers, profile):
    """Every worker runs as the unprivileged synspirit user."""
    if not runs_workers:
        pytest.skip("no workers on this host")
    pid = host.check_output(f"systemctl show -p MainPID --value synspirit-worker@{profile}")
    assert host.check_output(f"ps -o user= -p {pid}") == "synspirit"


def test_a_worker_host_runs_only_workers(host, inventory):
    """A host of the worker group runs no web instance (and no beat unless it is in `beat`):
    nothing of it is in nginx's upstreams, nothing listens on the web ports."""
    if host_name(host) not in inventory["groups"].get("worker", []):
        pytest.skip("worker hosts only")
    units = host.check_output("systemctl list-units --plain --no-legend --state=active "
                              "'synspirit-*.service' | awk '{print $1}'").split()
    allowed = {f"synspirit-worker@{p}.service" for p in PROFILES}
    if host_name(host) in inventory["groups"].get("beat", []):
        allowed.add("synspirit-beat.service")
    assert set(units) == allowed
    assert not listening_addresses(host, 8000)
