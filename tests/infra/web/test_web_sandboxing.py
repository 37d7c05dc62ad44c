"""Application hosts (web and worker): the application's units are sandboxed
(systemd-analyze security <= 2.0)."""
import re

import pytest
from conftest import runs_unit

testinfra_hosts = ["ansible://web", "ansible://worker"]

MAX_EXPOSURE = 2.0


@pytest.mark.parametrize("unit", ["synspirit-web@8000.service", "synspirit-worker@io.service",
                                  "synspirit-worker@cpu.service", "synspirit-beat.service"])
def test_exposure_score_is_at_most_2(host, inventory, unit):
    """systemd-analyze security scores the unit at 2.0 or less."""
    if not runs_unit(inventory, host, unit):
        pytest.skip(f"the inventory puts no {unit} on this host")
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", out).group(1))
    assert score <= MAX_EXPOSURE, out


@pytest.mark.parametrize("unit", ["synspirit-web@8000.service", "synspirit-worker@io.service"])
def test_sandbox_is_in_force_in_the_running_process(host, inventory, unit):
    """The running process has no capabilities and cannot gain privileges (NoNewPrivs)."""
    if not runs_unit(inventory, host, unit):
        pytest.skip(f"the inventory puts no {unit} on this host")
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    status = host.file(f"/proc/{pid}/status").content_string
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a system call filter is loaded
