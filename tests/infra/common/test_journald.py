"""Every host keeps its journal on disk, within the disk budget and age the common role sets."""
from pathlib import Path

import pytest
import yaml
from conftest import REPO

testinfra_hosts = ["ansible://all"]

DEFAULTS = yaml.safe_load((REPO / "ansible/roles/common/defaults/main.yml").read_text())
DROP_IN = Path("/etc/systemd/journald.conf.d/synspirit.conf")
USAGE_MESSAGE = "ec387f577b844b8fa948f33cad9a75e6"  # journald's "System Journal ... is N, max M"


def journald_setting(host, name: str) -> str:
    """The value journald reads for `name` from its configuration files, the last one winning."""
    config = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    values = [line.split("=", 1)[1].strip() for line in config.splitlines()
              if line.startswith(f"{name}=")]
    return values[-1] if values else ""


@pytest.mark.parametrize("name, variable", [
    ("Storage", None),
    ("SystemMaxUse", "common_journald_system_max_use"),
    ("MaxRetentionSec", "common_journald_max_retention"),
])
def test_journald_reads_the_retention_settings(host, name, variable):
    """journald's effective configuration has the role's persistent storage, size and age limits."""
    expected = "persistent" if variable is None else str(DEFAULTS[variable])
    assert journald_setting(host, name) == expected
    assert host.file(str(DROP_IN)).mode == 0o644


def test_journal_is_persistent(host):
    """The system journal lives under /var/log/journal, so it survives a reboot."""
    assert host.file("/var/log/journal").is_directory
    header = host.check_output("journalctl --header --no-pager | grep '^File path:'")
    assert "/var/log/journal/" in header


def test_running_journald_enforces_the_disk_budget(host):
    """The running journald (restarted after the drop-in changed) reports the role's cap as its max."""
    budget = str(DEFAULTS["common_journald_system_max_use"])  # e.g. 500M
    report = host.check_output(
        f"journalctl --no-pager -o cat MESSAGE_ID={USAGE_MESSAGE} | grep '^System Journal' | tail -1")
    assert f"max {float(budget[:-1]):.1f}{budget[-1]}" in report, report
