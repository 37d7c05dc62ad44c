"""Backups seen by monitoring: every run of synspirit-backup on a database host writes the node
exporter's textfile-collector file, Prometheus scrapes it (job node), and a failed run fires
SynSpiritBackupFailed, which the next good run resolves."""
import time

from conftest import wait_until
from monitoring_api import prometheus_of

METRICS_FILE = "/var/lib/prometheus/node-exporter/synspirit_backup.prom"  # roles/backup default


def read_metrics(host) -> dict[str, float]:
    lines = host.file(METRICS_FILE).content_string.splitlines()
    return {name: float(value) for name, value in
            (line.split() for line in lines if line and not line.startswith("#"))}


def in_prometheus(prometheus, name: str, data_host: str) -> dict[str, str]:
    return {r["metric"]["host"]: r["value"][1]
            for r in prometheus.query(f'{name}{{job="node", host="{data_host}"}}')}


def test_backup_runs_are_recorded_and_scraped(inventory, lab_host):
    """A good run: success 1, its time stamp and size, in the file (0644, atomic) and in Prometheus."""
    data_name = inventory["groups"]["postgresql"][0]
    data = lab_host(data_name)
    started = time.time()
    data.run_expect([0], "systemctl start synspirit-backup.service")
    f = data.file(METRICS_FILE)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    metrics = read_metrics(data)
    assert metrics["synspirit_backup_last_run_success"] == 1
    # The newest backup is named by the second it started (UTC), within this test's run.
    assert started - 2 <= metrics["synspirit_backup_last_success_timestamp_seconds"] <= time.time() + 1
    assert metrics["synspirit_backup_last_success_size_bytes"] > 10_000, metrics
    assert metrics["synspirit_backup_last_run_timestamp_seconds"] >= started - 1
    # Written through a temporary file and renamed: none is left behind.
    assert data.check_output(f"ls -A {METRICS_FILE.rsplit('/', 1)[0]}").split() == ["synspirit_backup.prom"]

    prometheus = prometheus_of(inventory)
    stamp = f'{metrics["synspirit_backup_last_success_timestamp_seconds"]:.0f}'
    assert wait_until(lambda: in_prometheus(prometheus, "synspirit_backup_last_success_timestamp_seconds",
                                            data_name) == {data_name: stamp}, timeout=60, interval=2), \
        prometheus.query('{__name__=~"synspirit_backup_.*"}')
    assert in_prometheus(prometheus, "synspirit_backup_last_run_success", data_name) == {data_name: "1"}
    # SynSpiritBackupMissing may be pending from before the first backup: gone at the next evaluation.
    assert wait_until(lambda: not [a for a in prometheus.alerts()
                                   if a["labels"]["alertname"].startswith("SynSpiritBackup")],
                      timeout=30, interval=2), prometheus.alerts()


def test_failed_backup_fires_an_alert_that_the_next_good_run_resolves(inventory, lab_host):
    """A run that cannot dump (a database that does not exist) records 0 and keeps the newest
    good backup's time stamp; SynSpiritBackupFailed fires; a good run resolves it."""
    data_name = inventory["groups"]["postgresql"][0]
    data = lab_host(data_name)
    before = read_metrics(data)
    failed = data.run("set -a && . /etc/default/synspirit-backup && "
                      "BACKUP_POSTGRESQL_DATABASE=no_such_database /usr/local/sbin/synspirit-backup")
    assert failed.rc != 0
    after = read_metrics(data)
    assert after["synspirit_backup_last_run_success"] == 0
    assert after["synspirit_backup_last_success_timestamp_seconds"] == \
        before["synspirit_backup_last_success_timestamp_seconds"]

    prometheus = prometheus_of(inventory)

    def backup_alert(state: str):
        return [a for a in prometheus.alerts()
                if a["labels"]["alertname"] == "SynSpiritBackupFailed" and a["state"] == state]

    try:
        firing = wait_until(lambda: backup_alert("firing"), timeout=60, interval=2)
        assert firing, prometheus.alerts()
        assert firing[0]["labels"]["host"] == data_name
    finally:
        data.run_expect([0], "systemctl start synspirit-backup.service")
    assert wait_until(lambda: not backup_alert("firing"), timeout=60, interval=2), prometheus.alerts()
