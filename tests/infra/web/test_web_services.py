"""Web hosts: the application's services run, are enabled, and listen where they should
(their Celery workers: tests/infra/worker/)."""
from conftest import address_of, listening_addresses, web_ports

testinfra_hosts = ["ansible://web"]


def test_one_web_instance_per_core_runs_and_is_enabled(host):
    """synspirit-web@PORT runs and is enabled for each core (ports from 8000)."""
    for port in web_ports(host):
        service = host.service(f"synspirit-web@{port}")
        assert service.is_running, port
        assert service.is_enabled, port


def test_no_web_instance_beyond_the_core_count(host):
    """No synspirit-web@ instance runs other than the one-per-core set."""
    running = host.check_output(
        "systemctl list-units --state=active --plain --no-legend 'synspirit-web@*.service'")
    ports = sorted(int(line.split()[0].split("@")[1].split(".")[0]) for line in running.splitlines())
    assert ports == web_ports(host)


def test_beat_runs_only_on_the_beat_hosts(host):
    """synspirit-beat runs (and is enabled) on the beat hosts and nowhere else."""
    beat = host.service("synspirit-beat")
    if "beat" in host.ansible.get_variables()["group_names"]:
        assert beat.is_running and beat.is_enabled
    else:
        assert not beat.is_running and not beat.is_enabled


def test_synspirit_target_is_active(host):
    """synspirit.target, which groups a host's services, is active and enabled."""
    target = host.service("synspirit.target")
    assert target.is_running
    assert target.is_enabled


def test_web_instances_listen_on_the_host_address_only(host):
    """Each gunicorn port is bound to the host's lab address, not to every address."""
    for port in web_ports(host):
        assert listening_addresses(host, port) == {address_of(host)}, port


def test_each_web_instance_answers_healthz(host):
    """GET /healthz on every instance answers 200 (asked on the host itself)."""
    for port in web_ports(host):
        code = host.check_output(
            "python3 -c %s %s",
            "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).status)",
            f"http://{address_of(host)}:{port}/healthz")
        assert code == "200", port


def test_each_web_instance_is_ready(host):
    """GET /readyz answers 200: the instance reaches PostgreSQL and Redis."""
    for port in web_ports(host):
        code = host.check_output(
            "python3 -c %s %s",
            "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).status)",
            f"http://{address_of(host)}:{port}/readyz")
        assert code == "200", port


def test_services_run_as_the_service_user(host):
    """Every web instance runs as the unprivileged synspirit user."""
    for unit in [f"synspirit-web@{port}" for port in web_ports(host)]:
        pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
        assert host.check_output(f"ps -o user= -p {pid}") == "synspirit", unit
