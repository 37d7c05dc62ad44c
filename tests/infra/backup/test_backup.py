"""Backups to the repository host (roles/backup): the primary of the moment archives every WAL
segment there, encrypted; full and differential backups run from there on timers and are
verified; a replica fetches what it misses from there; the Redis master's snapshot lands there.
Nothing of it lives on a data host."""
from __future__ import annotations

import json
import re
import secrets

import pytest
from conftest import app_env, wait_until
from probes import redis, redis_login

testinfra_hosts = []  # each test picks its hosts from the inventory
STANZA = "synspirit"  # group_vars/all/backup.yml
REPOSITORY = "/var/lib/pgbackrest"  # roles/backup defaults
AS_REPOSITORY = "runuser -u pgbackrest --"  # pgBackRest runs as the repository's user there


def sql(host, query: str, database: str = "postgres") -> str:
    return host.check_output("cd /tmp && runuser -u postgres -- psql -XAt -d %s -c %s", database, query)


def patroni(host) -> list[dict]:
    return json.loads(host.check_output("patronictl -c /etc/patroni/config.yml list --format json"))


def pgbackrest_info(repository) -> dict:
    """pgbackrest info of the stanza, as JSON, run as the repository's user."""
    out = repository.check_output(f"{AS_REPOSITORY} pgbackrest --stanza={STANZA} --output=json info")
    return json.loads(out)[0]


def info(repository) -> dict:
    """`synspirit-backup status --json` on the repository host."""
    return json.loads(repository.check_output("synspirit-backup status --json"))


@pytest.fixture(scope="module")
def repository(inventory, lab_host):
    return lab_host(inventory["groups"]["backup"][0])


@pytest.fixture(scope="module")
def members(inventory, lab_host) -> dict:
    """{"primary": host, "replicas": [hosts]} as Patroni says now."""
    rows = patroni(lab_host(inventory["groups"]["postgresql"][0]))
    return {"primary": lab_host(next(m["Member"] for m in rows if m["Role"] == "Leader")),
            "replicas": [lab_host(m["Member"]) for m in rows if m["Role"] != "Leader"],
            "names": {m["Role"]: m["Member"] for m in rows}}


def test_the_repository_is_on_a_host_that_is_no_data_host(inventory):
    """The backups survive the loss of every PostgreSQL and Redis host: the repository is elsewhere."""
    backup = set(inventory["groups"]["backup"])
    assert backup, "no [backup] group in the inventory"
    assert not backup & (set(inventory["groups"]["postgresql"]) | set(inventory["groups"]["redis"]))


def test_the_repository_holds_a_verified_full_backup(repository):
    """The converge took a first full backup; pgbackrest info reports the stanza ok, and
    pgbackrest verify finds every file of the repository matching its checksum."""
    status = info(repository)
    assert status["status"]["code"] == 0, status["status"]
    assert any(b["type"] == "full" for b in status["backups"]), status["backups"]
    assert not any(b["checksum_errors"] for b in status["backups"]), status["backups"]
    repository.run_expect([0], f"{AS_REPOSITORY} pgbackrest --stanza={STANZA} verify")


def test_the_repository_is_encrypted(repository, members):
    """The repository's files are ciphertext (OpenSSL's "Salted__" header): a row written now,
    archived with its WAL segment, is not found in clear anywhere in the repository."""
    marker = f"clear-text-{secrets.token_hex(8)}"
    sql(members["primary"], "CREATE TABLE IF NOT EXISTS backup_probe (t text); "
                            f"INSERT INTO backup_probe VALUES ('{marker}')")
    try:
        repository.run_expect([0], "synspirit-backup check")  # that segment is in the repository now
        assert repository.run(f"grep -rl {marker} {REPOSITORY}/archive {REPOSITORY}/backup").rc == 1
        files = repository.check_output(f"find {REPOSITORY}/archive/{STANZA} {REPOSITORY}/backup/{STANZA} "
                                        "-type f -size +0 | head -20").split()
        assert files
        for path in files:
            assert repository.check_output(f"head -c 8 {path}") == "Salted__", path
        assert pgbackrest_info(repository)["cipher"] == "aes-256-cbc"
    finally:
        sql(members["primary"], "DROP TABLE backup_probe")


def test_only_the_primary_archives(members, repository):
    """archive_mode on (not always): the primary's archiver has archived segments, a replica's
    none, so there is one writer to the stanza; and a segment switched now reaches the repository."""
    archived = int(sql(members["primary"], "SELECT archived_count FROM pg_stat_archiver"))
    assert archived > 0
    for replica in members["replicas"]:
        assert sql(replica, "SHOW archive_mode") == "on"
        assert sql(replica, "SELECT archived_count FROM pg_stat_archiver") == "0"
    repository.run_expect([0], "synspirit-backup check")


def test_a_copy_of_an_earlier_timeline_does_not_stop_archiving(members, repository):
    """After a failover the new primary may hold its own copy of a segment of the timeline before,
    which PostgreSQL then asks to archive and pgBackRest refuses (the repository holds that
    segment, other bytes): synspirit-archive-push lets that one go, so that the segments after
    it are archived; the same refusal on the member's own timeline stays an error. Played with
    the newest archived segment's name over other WAL, in a folder beside the data (nothing
    reaches the repository: it refuses the name)."""
    primary = members["primary"]
    segment = pgbackrest_info(repository)["archive"][-1]["max"]
    timeline = int(segment[:8], 16)
    other = sql(primary, "SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' "
                         f"AND name <> '{segment}' ORDER BY modification DESC LIMIT 1")
    folder = primary.check_output("runuser -u postgres -- mktemp -d /var/lib/postgresql/archive-test.XXXX")
    push = (f"cd {folder} && runuser -u postgres -- /usr/local/sbin/synspirit-archive-push "
            f"pgbackrest --stanza={STANZA} archive-push {folder}/pg_wal/{segment}")
    try:
        primary.check_output(f"runuser -u postgres -- mkdir {folder}/pg_wal && runuser -u postgres -- "
                             f"cp /var/lib/postgresql/15/main/pg_wal/{other} {folder}/pg_wal/{segment}")
        if timeline > 1:
            primary.check_output(f"runuser -u postgres -- touch {folder}/pg_wal/{timeline:08X}.history")
        own = primary.run(push)
        assert own.rc == 45 and "different checksum" in own.stderr, own
        primary.check_output(f"runuser -u postgres -- touch {folder}/pg_wal/{timeline + 1:08X}.history")
        earlier = primary.run(push)
        assert earlier.rc == 0, earlier
        assert f"{segment} is of timeline {timeline}" in earlier.stderr
    finally:
        primary.run(f"rm -rf {folder}")
    command = sql(primary, "SHOW archive_command")
    assert command.startswith("/usr/local/sbin/synspirit-archive-push pgbackrest ")


def test_a_replica_streams_and_can_read_the_repository(members, repository):
    """A replica streams through its slot, with no restore_command in the way of a failover
    (group_vars/all/postgresql.yml), and pgBackRest's archive-get reads the archive from it (what
    a restore on that host needs)."""
    replica = members["replicas"][0]
    assert sql(replica, "SHOW restore_command") == ""
    assert sql(replica, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    assert sql(replica, "SHOW wal_retrieve_retry_interval") == "1s"
    segment = pgbackrest_info(repository)["archive"][-1]["max"]
    replica.run_expect([0], f"runuser -u postgres -- pgbackrest --stanza={STANZA} "
                            f"archive-get {segment} /tmp/fetched-{segment}")
    assert replica.file(f"/tmp/fetched-{segment}").size == 16 * 1024 * 1024
    replica.run(f"rm -f /tmp/fetched-{segment}")


def test_data_pages_carry_checksums(members):
    """Data checksums are on: pgBackRest checks every page it backs up against them."""
    assert sql(members["primary"], "SHOW data_checksums") == "on"


def test_the_backup_timers_are_scheduled_and_persistent(repository):
    """Full weekly, differential the other days, metrics every 5 min: enabled, waiting, catching up
    after downtime."""
    for timer, unit in (("synspirit-backup-full.timer", "synspirit-backup@full.service"),
                        ("synspirit-backup-diff.timer", "synspirit-backup@diff.service"),
                        ("synspirit-backup-metrics.timer", "synspirit-backup-metrics.service")):
        assert repository.service(timer).is_enabled, timer
        props = dict(line.split("=", 1) for line in repository.check_output(
            f"systemctl show {timer} -p ActiveState -p Unit").splitlines())
        assert props["ActiveState"] == "active", (timer, props)
        assert props["Unit"] == unit, (timer, props)
    assert repository.check_output("systemctl show -P Persistent synspirit-backup-full.timer") == "yes"


def test_a_differential_backup_runs_from_the_repository_host(repository):
    """systemctl start synspirit-backup@diff.service: pgBackRest finds the primary among the members,
    the backup completes and shows in pgbackrest info; the journal says so."""
    before = {b["label"] for b in info(repository)["backups"]}
    repository.run_expect([0], "systemctl start synspirit-backup@diff.service")
    new = [b for b in info(repository)["backups"] if b["label"] not in before]
    assert [b["type"] for b in new] == ["diff"], new
    journal = repository.check_output("journalctl -u synspirit-backup@diff.service --no-pager -o cat -n 50")
    assert "diff backup complete" in journal


def test_a_damaged_file_in_the_repository_is_found_by_verify(repository):
    """pgbackrest verify (run after every full backup) fails on a WAL segment whose bytes changed:
    it names the segment as invalid, or (pgBackRest 2.45, the byte inside the encrypted
    compressed stream) aborts on the corruption it finds decompressing it."""
    segment = repository.check_output(
        f"find {REPOSITORY}/archive/{STANZA} -type f -name '0*-*' | sort | head -1")
    repository.run_expect([0], f"cp -p {segment} /root/segment.bak")
    try:
        repository.run_expect([0], f"printf 'x' | dd of={segment} bs=1 seek=100 conv=notrunc status=none")
        result = repository.run(f"{AS_REPOSITORY} pgbackrest --stanza={STANZA} --log-level-console=info "
                                "verify")
        output = result.stdout + result.stderr
        assert result.rc != 0, output
        if "invalid" in result.stdout:
            assert segment.rsplit("/", 1)[1][:24] in result.stdout, output
        else:
            assert "corruption" in output.lower(), output
    finally:
        repository.run_expect([0], f"cp -p /root/segment.bak {segment} && rm /root/segment.bak")


def test_backup_units_are_sandboxed(repository, inventory, lab_host):
    """systemd-analyze security rates the backup units better than "UNSAFE"."""
    redis_host = lab_host(inventory["groups"]["redis"][0])
    for host, unit in ((repository, "synspirit-backup@full.service"),
                       (redis_host, "synspirit-redis-snapshot.service")):
        out = host.check_output(f"systemd-analyze security {unit} --no-pager | tail -1")
        score = float(re.search(r"exposure level.*?:\s*([\d.]+)", out).group(1))
        assert score < 9.0, (unit, out)


def test_the_redis_master_sends_an_encrypted_snapshot(inventory, lab_host, repository):
    """synspirit-redis-snapshot on every Redis host: the master's snapshot reaches the repository
    host encrypted, and decrypted it holds what Redis held."""
    redis_url = app_env(lab_host(inventory["groups"]["web"][0]))["REDIS_URL"]
    hosts = {name: lab_host(name) for name in inventory["groups"]["redis"]}
    masters = [n for n, h in hosts.items()
               if "role:master" in h.check_output(
                   "REDISCLI_AUTH=$(sed -n 's/^REDISCLI_AUTH=//p' /etc/default/synspirit-redis-snapshot) "
                   "synspirit-redis-cli --user admin --no-auth-warning INFO replication")]
    master = inventory["groups"]["redis"][0] if inventory["groups"]["redis"][0] in masters else masters[0]
    # Short (Redis compresses strings over 20 bytes in a snapshot) and never a number: eight hex
    # digits that happen to be decimal (2 % of them) are stored as an integer, which grep does not
    # find (the fresh-clone check of 2026-12-04 failed so).
    key, value = f"snap{secrets.token_hex(3)}", f"v{secrets.token_hex(4)}"
    login = redis_login(redis_url)
    assert redis(hosts[master], "127.0.0.1", 6379, login, ["SET", key, value])[1] == "OK"
    before = {s["file"] for s in info(repository)["redis_snapshots"]}
    try:
        for host in hosts.values():
            host.run_expect([0], "systemctl start synspirit-redis-snapshot.service")
        new = [s for s in info(repository)["redis_snapshots"] if s["file"] not in before]
        assert f"-{master}.rdb.enc" in " ".join(s["file"] for s in new), new
        stored = f"/var/lib/synspirit-backup/redis/{[s['file'] for s in new if master in s['file']][0]}"
        assert repository.check_output(f"head -c 8 {stored}") == "Salted__"
        assert repository.run(f"grep -c {value} {stored}").stdout.strip() == "0"
        repository.run_expect([0], "synspirit-backup redis-snapshot --to /root/check.rdb")
        repository.run_expect([0], "redis-check-rdb /root/check.rdb")
        assert repository.run(f"grep -c {value} /root/check.rdb").stdout.strip() != "0"
    finally:
        repository.run("rm -f /root/check.rdb")
        redis(hosts[master], "127.0.0.1", 6379, login, ["DEL", key])


def test_the_snapshot_key_can_do_nothing_else(inventory, lab_host, repository):
    """A Redis host's key runs only `synspirit-backup receive-redis` on the repository host: asked
    for a shell command, it runs none (and an empty "snapshot" is refused, nothing stored)."""
    host = lab_host(inventory["groups"]["redis"][0])
    address = inventory["addresses"][inventory["groups"]["backup"][0]]
    before = info(repository)["redis_snapshots"]
    result = host.run(f"ssh -i /etc/synspirit-backup/id_ed25519 -o BatchMode=yes "
                      f"-o UserKnownHostsFile=/etc/synspirit-backup/known_hosts pgbackrest@{address} "
                      "'id; touch /var/lib/pgbackrest/owned' </dev/null")
    assert result.rc != 0
    assert "uid=" not in result.stdout
    assert not repository.file("/var/lib/pgbackrest/owned").exists
    assert info(repository)["redis_snapshots"] == before


def test_backup_runs_wait_for_each_other(repository):
    """Two backups at once: the second fails on pgBackRest's lock instead of running beside the
    first (each unit has its own /tmp; the lock lives in /var/spool/pgbackrest/lock)."""
    first = repository.run("systemctl start --no-block synspirit-backup@incr.service && sleep 2 && "
                           "synspirit-backup run incr")
    state = "systemctl show -P ActiveState synspirit-backup@incr.service"
    wait_until(lambda: repository.check_output(state) in ("inactive", "failed"), 300, interval=2)
    assert first.rc != 0, first.stdout
    assert "lock" in (first.stdout + first.stderr).lower(), first.stdout + first.stderr
    assert repository.check_output("systemctl show -P Result synspirit-backup@incr.service") == "success"


def test_archiving_follows_a_switchover(inventory, lab_host, repository):
    """After `patronictl switchover` the new primary archives (its pg_stat_archiver counts a
    segment that reaches the repository on the new timeline) and the former primary, now a
    replica, archives nothing more: one writer to the stanza, whichever member leads."""
    first = lab_host(inventory["groups"]["postgresql"][0])
    rows = patroni(first)
    old = next(m["Member"] for m in rows if m["Role"] == "Leader")
    new = next(m["Member"] for m in rows if m["Role"] == "Sync Standby")
    timeline = int(next(m["TL"] for m in rows if m["Role"] == "Leader"))
    first.run_expect([0], f"patronictl -c /etc/patroni/config.yml switchover --leader {old} "
                          f"--candidate {new} --force")

    def settled():
        now = patroni(first)
        roles = {m["Member"]: m["Role"] for m in now}
        return (roles.get(new) == "Leader" and "Sync Standby" in roles.values()
                and all(m["State"] in ("running", "streaming") for m in now))
    assert wait_until(settled, 120, interval=2), patroni(first)

    old_host, new_host = lab_host(old), lab_host(new)
    old_count = int(sql(old_host, "SELECT archived_count FROM pg_stat_archiver"))
    new_count = int(sql(new_host, "SELECT archived_count FROM pg_stat_archiver"))
    repository.run_expect([0], "synspirit-backup check")  # a WAL switch on the primary, archived
    assert int(sql(new_host, "SELECT archived_count FROM pg_stat_archiver")) > new_count
    newest = pgbackrest_info(repository)["archive"][-1]["max"]
    assert int(newest[:8], 16) > timeline, newest
    segment = sql(new_host, "SELECT last_archived_wal FROM pg_stat_archiver")
    assert int(segment[:8], 16) > timeline, segment
    assert int(sql(old_host, "SELECT archived_count FROM pg_stat_archiver")) == old_count
    assert sql(old_host, "SELECT pg_is_in_recovery()") == "t"
