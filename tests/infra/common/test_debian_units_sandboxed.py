"""Debian's own units run sandboxed: systemd-analyze security <= 3.0 for each (9.2-9.6 as the
packages ship them), and the running process under it (no privilege gain, a system call
filter). That each still does its job is checked where the job is: nginx serves
(tests/infra/lb, e2e), keepalived moves the floating address (tests/infra/lb, chaos crash-lb),
Patroni replicates, fails over and archives (tests/infra/data, backup, chaos), etcd keeps a
healthy quorum (tests/infra/data), Prometheus scrapes every exporter (tests/infra/monitoring)."""
import re

import pytest
from conftest import host_name

testinfra_hosts = ["ansible://all"]

MAX_EXPOSURE = 3.0

# unit -> the inventory groups whose hosts run it (None: every host)
UNITS = {
    "nginx.service": ["lb"],
    "keepalived.service": ["lb"],
    "patroni.service": ["postgresql"],
    "etcd.service": ["etcd"],
    "redis-server.service": ["redis"],
    "redis-sentinel.service": ["redis"],
    "prometheus-node-exporter.service": None,
    "prometheus-nginx-exporter.service": ["lb"],
    "prometheus-postgres-exporter.service": ["postgresql"],
    "prometheus-redis-exporter.service": ["redis"],
    "prometheus.service": ["monitoring"],
    "prometheus-alertmanager.service": ["monitoring"],
}


def _runs(host, inventory, unit: str) -> bool:
    groups = UNITS[unit]
    return groups is None or any(host_name(host) in inventory["groups"].get(g, []) for g in groups)


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_is_sandboxed(host, inventory, unit):
    """systemd-analyze security scores the unit at 3.0 or less, and it runs."""
    if not _runs(host, inventory, unit):
        pytest.skip(f"no {unit} on this host")
    assert host.service(unit.removesuffix(".service")).is_running
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", out).group(1))
    assert score <= MAX_EXPOSURE, out


@pytest.mark.parametrize("unit", UNITS)
def test_the_running_process_is_under_the_sandbox(host, inventory, unit):
    """The running main process cannot gain privileges and has a system call filter (the
    drop-in was in force when it started, not only written)."""
    if not _runs(host, inventory, unit):
        pytest.skip(f"no {unit} on this host")
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    status = host.file(f"/proc/{pid}/status").content_string
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1", unit
    assert fields["Seccomp"].strip() == "2", unit
