"""Backups on the data host: scheduled, root-only, checked, pruned, and loud when a step fails."""
import re

import pytest

testinfra_hosts = ["ansible://postgresql"]

BACKUP_DIR = "/var/backups/synspirit"
STAMP = re.compile(r"^\d{8}T\d{6}Z$")


def backups(host, folder: str = BACKUP_DIR) -> list[str]:
    """The complete backups in `folder`, oldest first."""
    names = host.check_output(f"find {folder} -mindepth 1 -maxdepth 1 -printf '%f\\n'").split()
    return sorted(n for n in names if STAMP.match(n))


@pytest.fixture(scope="module")
def fresh_backup(host) -> str:
    """Run the backup service once, as the timer would; the name of the backup it made."""
    before = set(backups(host))
    host.run_expect([0], "systemctl start synspirit-backup.service")
    made = sorted(set(backups(host)) - before)
    assert len(made) == 1, made
    return made[0]


def test_backup_timer_is_scheduled_and_persistent(host):
    """synspirit-backup.timer is enabled, waiting for its next run, and catches up after downtime."""
    timer = host.service("synspirit-backup.timer")
    assert timer.is_enabled
    assert host.check_output("systemctl is-active synspirit-backup.timer") == "active"
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show synspirit-backup.timer -p Persistent -p NextElapseUSecRealtime -p Unit").splitlines())
    assert props["Persistent"] == "yes"
    assert props["Unit"] == "synspirit-backup.service"
    assert props["NextElapseUSecRealtime"] not in ("", "0", "n/a")


def test_backup_service_succeeds_and_logs_to_the_journal(host, fresh_backup):
    """The run exits 0 and the journal says which backup it completed."""
    assert host.check_output("systemctl show -p Result --value synspirit-backup.service") == "success"
    journal = host.check_output("journalctl -u synspirit-backup.service --no-pager -o cat -n 200")
    assert f"backup {BACKUP_DIR}/{fresh_backup} complete" in journal


def test_backup_holds_a_restorable_dump_and_a_redis_snapshot(host, fresh_backup):
    """The dump lists the application's tables, the RDB passes redis-check-rdb, checksums match."""
    folder = f"{BACKUP_DIR}/{fresh_backup}"
    toc = host.check_output(f"pg_restore --list {folder}/postgresql.dump")
    for table in ("users", "posts", "post_comments", "reactions", "alembic_version"):
        assert re.search(rf"TABLE DATA public {table} ", toc), table
    host.run_expect([0], f"redis-check-rdb {folder}/redis.rdb")
    host.run_expect([0], f"cd {folder} && sha256sum --check --quiet SHA256SUMS")


def test_backups_are_readable_by_root_only(host, fresh_backup):
    """The backup folders are 0700 and every file 0600, all owned by root."""
    for folder in (BACKUP_DIR, f"{BACKUP_DIR}/{fresh_backup}"):
        f = host.file(folder)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o700), folder
    names = host.check_output(f"ls {BACKUP_DIR}/{fresh_backup}").split()
    assert set(names) == {"postgresql.dump", "redis.rdb", "SHA256SUMS"}
    for name in names:
        f = host.file(f"{BACKUP_DIR}/{fresh_backup}/{name}")
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), name


def test_backup_service_is_sandboxed(host):
    """systemd-analyze security rates the backup service better than "UNSAFE"."""
    out = host.check_output("systemd-analyze security synspirit-backup.service --no-pager | tail -1")
    score = float(re.search(r"exposure level.*?:\s*([\d.]+)", out).group(1))
    assert score < 9.0, out


@pytest.fixture
def scratch(host):
    """An empty folder for backups made with other settings; removed afterwards."""
    folder = host.check_output("mktemp -d /root/backup-test.XXXXXX")
    yield folder
    host.run(f"rm -rf {folder}")


def run_backup(host, folder: str, keep: int, database: str):
    """synspirit-backup with the host's settings but another folder, retention or database,
    recording nothing for monitoring (the real backups' metrics stay as they are)."""
    return host.run(
        f"set -a && . /etc/default/synspirit-backup && BACKUP_DIR={folder} BACKUP_KEEP={keep} "
        f"BACKUP_POSTGRESQL_DATABASE={database} BACKUP_REDIS_PORT= BACKUP_METRICS_FILE= "
        "/usr/local/sbin/synspirit-backup")


def test_failing_step_fails_the_run_and_leaves_no_backup(host, scratch):
    """pg_dump of a missing database: non-zero exit, nothing complete or partial left behind."""
    result = run_backup(host, scratch, 3, "no_such_database")
    assert result.rc != 0
    assert "no_such_database" in result.stderr
    assert host.check_output(f"ls -A {scratch}") == ""


def test_only_the_newest_backups_are_kept(host, scratch):
    """With BACKUP_KEEP=2, a third backup removes the oldest one."""
    made = []
    for _ in range(3):
        host.run_expect([0], "sleep 1")  # backups are named by the second
        result = run_backup(host, scratch, 2, "synspirit")
        assert result.rc == 0, result.stderr
        made.append(backups(host, scratch)[-1])
    assert backups(host, scratch) == made[1:]
