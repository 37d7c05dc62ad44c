"""Application hosts (web and worker): systemd brings a killed service back within seconds."""
import pytest
from conftest import runs_unit, wait_until

testinfra_hosts = ["ansible://web", "ansible://worker"]

RESTART_WITHIN = 15  # seconds


def main_pid(host, unit) -> int:
    return int(host.check_output(f"systemctl show -p MainPID --value {unit}"))


@pytest.mark.parametrize("unit", ["synspirit-web@8000", "synspirit-worker@io",
                                  "synspirit-worker@cpu", "synspirit-beat"])
def test_killed_service_is_restarted(host, inventory, unit):
    """kill -9 of the main process is followed by a new main process, active again."""
    if not runs_unit(inventory, host, unit):
        pytest.skip(f"the inventory puts no {unit} on this host")
    before = main_pid(host, unit)
    assert before > 0
    host.run_expect([0], f"kill -9 {before}")

    def back():
        pid = main_pid(host, unit)
        active = host.run(f"systemctl is-active {unit}").stdout.strip() == "active"
        return pid not in (0, before) and active

    assert wait_until(back, RESTART_WITHIN, interval=0.5), host.run(
        f"systemctl status --no-pager {unit}").stdout
