"""Backups seen by monitoring: synspirit-backup on the repository host writes the node exporter's
textfile (each backup run, and every 5 min what the repository holds), Prometheus scrapes it
(job node), the primary's WAL archiving shows through the PostgreSQL exporter, and a failed
backup run fires SynSpiritBackupFailed, which the next good run resolves."""
import time

from conftest import wait_until
from monitoring_api import prometheus_of

METRICS_FILE = "/var/lib/prometheus/node-exporter/synspirit_backup.prom"  # roles/backup default


def read_metrics(host) -> dict[str, float]:
    lines = host.file(METRICS_FILE).content_string.splitlines()
    return {name: float(value) for name, value in
            (line.split() for line in lines if line and not line.startswith("#"))}


def test_backup_runs_are_recorded_and_scraped(inventory, lab_host):
    """A good run: success 1, the newest backup's end and size, free space, the point-in-time
    window; in the file (0644, written atomically) and in Prometheus."""
    name = inventory["groups"]["backup"][0]
    repository = lab_host(name)
    started = time.time()
    repository.run_expect([0], "systemctl start synspirit-backup@incr.service")
    f = repository.file(METRICS_FILE)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    metrics = read_metrics(repository)
    assert metrics['synspirit_backup_last_run_success{type="incr"}'] == 1
    assert metrics['synspirit_backup_last_run_timestamp_seconds{type="incr"}'] >= started - 1
    newest = metrics['synspirit_backup_last_success_timestamp_seconds{type="incr"}']
    assert started - 1 <= newest <= time.time() + 1
    assert metrics['synspirit_backup_last_success_size_bytes{type="incr"}'] > 0
    assert metrics['synspirit_backup_last_success_timestamp_seconds{type="full"}'] > 0
    assert metrics["synspirit_backup_repository_readable"] == 1
    free = metrics["synspirit_backup_repository_avail_bytes"]
    assert 0 < free < metrics["synspirit_backup_repository_size_bytes"]
    assert 0 < metrics["synspirit_backup_recoverable_from_timestamp_seconds"] < started
    assert metrics["synspirit_backup_archived_until_timestamp_seconds"] > started - 600
    assert metrics["synspirit_backup_checksum_error_backups"] == 0
    # Written through a temporary file and renamed: none is left behind.
    assert not [n for n in repository.check_output(f"ls -A {METRICS_FILE.rsplit('/', 1)[0]}").split()
                if n.startswith(".")]

    prometheus = prometheus_of(inventory)
    stamp = f"{newest:.0f}"

    def scraped():
        return {r["value"][1] for r in prometheus.query(
            f'synspirit_backup_last_success_timestamp_seconds{{job="node", host="{name}", type="incr"}}')}
    assert wait_until(lambda: {f"{float(v):.0f}" for v in scraped()} == {stamp}, timeout=60, interval=2), \
        prometheus.query('{__name__=~"synspirit_backup_.*"}')
    # Not SynSpiritBackupRepositoryFilling: the lab's repository lives on the controller's disk,
    # whose free space is the machine's (19.6% free, under the 20% threshold, on 2026-12-02).
    assert wait_until(lambda: not [a for a in prometheus.alerts()
                                   if a["labels"]["alertname"].startswith("SynSpiritBackup")
                                   and a["labels"]["alertname"] != "SynSpiritBackupRepositoryFilling"],
                      timeout=60, interval=2), prometheus.alerts()


def test_wal_archiving_is_seen_on_the_primary(inventory):
    """The PostgreSQL exporter reports pg_stat_archiver: the primary has archived segments, none failed."""
    prometheus = prometheus_of(inventory)
    primary = prometheus.query("patroni_primary == 1")
    assert len(primary) == 1, primary
    host = primary[0]["metric"]["host"]
    archived = prometheus.query(f'pg_stat_archiver_archived_count{{host="{host}"}}')
    assert archived and float(archived[0]["value"][1]) > 0, archived
    alerts = [a["labels"]["alertname"] for a in prometheus.alerts()]
    assert not [a for a in alerts if a.startswith("SynSpiritWALArchiving")], alerts


def test_failed_backup_fires_an_alert_that_the_next_good_run_resolves(inventory, lab_host):
    """A run that finds no primary (every member's port wrong) records 0 and keeps the newest good
    backup's time; SynSpiritBackupFailed fires; a good run resolves it."""
    name = inventory["groups"]["backup"][0]
    repository = lab_host(name)
    before = read_metrics(repository)
    # pgBackRest's PGBACKREST_* variables override its configuration file.
    failed = repository.run("PGBACKREST_PG1_PORT=1 PGBACKREST_PG2_PORT=1 PGBACKREST_PG3_PORT=1 "
                            "synspirit-backup run incr")
    assert failed.rc != 0
    after = read_metrics(repository)
    assert after['synspirit_backup_last_run_success{type="incr"}'] == 0
    assert after['synspirit_backup_last_success_timestamp_seconds{type="incr"}'] == \
        before['synspirit_backup_last_success_timestamp_seconds{type="incr"}']

    prometheus = prometheus_of(inventory)

    def backup_alert(state: str):
        return [a for a in prometheus.alerts()
                if a["labels"]["alertname"] == "SynSpiritBackupFailed" and a["state"] == state]

    try:
        firing = wait_until(lambda: backup_alert("firing"), timeout=90, interval=2)
        assert firing, prometheus.alerts()
        assert (firing[0]["labels"]["host"], firing[0]["labels"]["type"]) == (name, "incr")
    finally:
        repository.run_expect([0], "systemctl start synspirit-backup@incr.service")
    assert wait_until(lambda: not backup_alert("firing"), timeout=90, interval=2), prometheus.alerts()
