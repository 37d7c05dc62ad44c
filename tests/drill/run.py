"""`make drill`: the disaster drill of docs/operations.md ("Disaster: every data host lost").

    LAB_ID=N .venv/bin/python tests/drill/run.py [--write-seconds 90]

On a lab that `make lab` converged. Writers create posts through the load balancer and record
every acknowledged one with the time of its answer. Then every data host (PostgreSQL, etcd,
Redis) loses power at the same instant and its disk is destroyed (`lab.sh wipe`: the bare base
image again, new SSH host keys). The documented rebuild follows:

    ansible-playbook -i inventories/NAME site.yml --limit 'postgresql:etcd:redis:backup'

which reinstalls the hosts and starts the PostgreSQL cluster from the backup repository's newest
state (Patroni's bootstrap runs synspirit-pg-restore: the newest backup plus every archived WAL
segment). Measured and judged:
- RTO: from the power loss until a new user can register and post through the load balancer.
- RPO: acknowledged posts missing afterwards, and how long before the power loss the oldest of
  them was acknowledged (at most 60 s: archive_timeout is 30 s).
- users from before log in, a post's counts equal its rows, the cluster has three members.
Prints a table, writes .cache/drill/results.json; exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
from labhosts import INV, INVENTORY, LAB_ID, LB, REPO, cluster, lab_sh, log, psql, ssh, wait_for  # noqa: E402
from load import User, session  # noqa: E402

RESULTS = REPO / ".cache/drill/results.json"
RPO_LIMIT = 60.0  # s of acknowledged writes that may be lost (issue 15)
WRITERS = 3
DATA_HOSTS = sorted(set(INV["groups"].get("postgresql", [])) | set(INV["groups"].get("etcd", []))
                    | set(INV["groups"].get("redis", [])))


class Writers:
    """Threads creating posts as fast as the site answers; every 201 recorded with its time."""

    def __init__(self, users: list[User]):
        self.users, self.acked, self.failed = users, [], 0
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(u,), daemon=True) for u in users]

    def _run(self, user: User) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                r = user.http.post(f"{LB}/api/posts", timeout=5,
                                   json={"title": f"Drill {n}", "content": "Written before the disaster."})
                ok = r.status_code == 201
            except Exception:  # noqa: BLE001 - the site goes away on purpose
                ok = False
            with self.lock:
                if ok:
                    self.acked.append((r.json()["id"], time.time()))
                else:
                    self.failed += 1
            if not ok:
                time.sleep(0.2)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(10)


def register_with_password() -> tuple[User, str, str]:
    user, name, password = User(LB), f"drill_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}"
    r = user.request("POST", "/api/auth/register", json={"username": name, "password": password})
    r.raise_for_status()
    user.id, user.token = r.json()["user"]["id"], r.json()["token"]
    user.http.headers["Authorization"] = f"Bearer {user.token}"
    return user, name, password


def site_takes_writes() -> bool:
    """A new user registers and posts through the load balancer."""
    try:
        user, _, _ = register_with_password()
        r = user.request("POST", "/api/posts", json={"title": "After", "content": "Back."})
        return r.status_code == 201
    except Exception:  # noqa: BLE001
        return False


def like(post_id: int) -> None:
    r = User(LB).register().request("POST", "/api/actions",
                                    json={"action": "like", "target_type": "post", "target_id": post_id})
    r.raise_for_status()


def likes_equal_rows(post_id: int, expected: int) -> bool:
    """The API's like count of the post and its like rows on the primary both equal `expected`."""
    api = session().get(f"{LB}/api/posts/{post_id}", timeout=10).json()["counts"]["likes"]
    rows = int(psql(f"SELECT count(*) FROM reactions WHERE post_id = {post_id} AND action = 'like'")[0][0])
    return api == rows == expected


def posts_present(ids: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ",".join(str(i) for i in ids[start:start + 500])
        found |= {int(r[0]) for r in psql(f"SELECT id FROM posts WHERE id IN ({chunk})")}
    return found


def one_leader_of_all() -> bool:
    members = cluster()
    return (len(members) == len(INV["groups"]["postgresql"])
            and sum(m["Role"] == "Leader" for m in members) == 1)


def in_parallel(fn, items) -> None:
    errors = []

    def run(item):
        try:
            fn(item)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{item}: {e}")
    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))


def rebuild(log_file: Path) -> subprocess.CompletedProcess:
    """The runbook's command, from the repository's ansible/ folder."""
    limit = "postgresql:etcd:redis:backup"
    log(f"ansible-playbook site.yml --limit '{limit}' (log: {log_file})")
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
    with open(log_file, "w") as out:
        return subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(INVENTORY), "site.yml",
                               "--limit", limit], cwd=REPO / "ansible", env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=3600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-seconds", type=float, default=90,
                    help="seconds of writes before the disaster (several archive_timeout periods)")
    args = ap.parse_args()
    if not INVENTORY.exists():
        print(f"no lab inventory at {INVENTORY}: run `LAB_ID={LAB_ID} make lab` first", file=sys.stderr)
        return 2
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    repository = INV["groups"]["backup"][0]
    status = ssh(repository, "synspirit-backup status | tail -3").strip().replace("\n", "; ")
    log(f"repository on {repository}: {status}")

    # Before: a user with a password, a post with two likes, then the writers.
    author, name, password = register_with_password()
    r = author.request("POST", "/api/posts", json={"title": "Liked before", "content": "Two likes."})
    r.raise_for_status()
    liked = r.json()["id"]
    like(liked)
    like(liked)
    writers = Writers([User(LB).register() for _ in range(WRITERS)])
    writers.start()
    log(f"{WRITERS} writers creating posts for {args.write_seconds:.0f} s")
    time.sleep(args.write_seconds)

    # The disaster: power lost on every data host at once, then their disks destroyed.
    log(f"power loss on {', '.join(DATA_HOSTS)}")
    t_crash = time.time()
    in_parallel(lambda h: lab_sh("crash", h), DATA_HOSTS)
    time.sleep(5)
    writers.stop()
    acked = sorted(writers.acked, key=lambda a: a[1])
    before_crash = [a for a in acked if a[1] <= t_crash]
    log(f"{len(before_crash)} posts acknowledged before the power loss ({writers.failed} requests failed)")
    t_wipe = time.time()
    in_parallel(lambda h: lab_sh("wipe", h, timeout=600), DATA_HOSTS)
    wiped = time.time() - t_wipe
    log(f"disks wiped, hosts up again (bare image) in {wiped:.0f} s")

    # The rebuild, as the runbook says.
    t_site = time.time()
    result = rebuild(RESULTS.parent / "site.log")
    converge = time.time() - t_site
    log(f"site.yml: rc {result.returncode} in {converge:.0f} s")
    back = wait_for(site_takes_writes, 600, 2) if result.returncode == 0 else False
    t_back = time.time()
    rto = t_back - t_crash if back else None
    log(f"the site takes writes again: {'yes' if back else 'NO'}; RTO {rto and round(rto)} s")

    # What came back.
    found = posts_present([i for i, _ in before_crash]) if back else set()
    missing = [(i, t) for i, t in before_crash if i not in found] if back else before_crash
    window = t_crash - missing[0][1] if missing else 0.0
    newest_kept = max((t for i, t in before_crash if i in found), default=None)
    recovery = ("journalctl -u patroni --no-pager -o cat "
                "| grep -E 'last completed transaction|selected new timeline'")
    restored_to = ssh(INV["groups"]["postgresql"][0], recovery, check=False).strip() if back else ""
    checks = {
        "site.yml rebuilt the data hosts": result.returncode == 0,
        "the site takes writes again": bool(back),
        f"acknowledged writes lost cover at most {RPO_LIMIT:.0f} s": back and window <= RPO_LIMIT,
        "a user from before logs in": back and User(LB).request(
            "POST", "/api/auth/login", json={"username": name, "password": password}).status_code == 200,
        "a post's likes equal its rows": back and bool(wait_for(lambda: likes_equal_rows(liked, 2), 60, 2)),
        "three PostgreSQL members, one leader": back and bool(wait_for(one_leader_of_all, 120, 5)),
    }
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "make drill " + " ".join(sys.argv[1:]), "lab_id": LAB_ID, "data_hosts": DATA_HOSTS,
        "writers": WRITERS, "write_seconds": args.write_seconds,
        "acknowledged_before_crash": len(before_crash), "lost": len(missing),
        "lost_window_s": round(window, 1),
        "newest_kept_s_before_crash": newest_kept and round(t_crash - newest_kept, 1),
        "wipe_s": round(wiped, 1), "site_yml_s": round(converge, 1), "rto_s": rto and round(rto, 1),
        "recovery_log": restored_to.splitlines(), "checks": checks, "passed": all(checks.values()),
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print("| acked before | lost | lost window | wipe | site.yml | RTO | result |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(before_crash)} | {len(missing)} | {window:.1f} s | {wiped:.0f} s | {converge:.0f} s | "
          f"{'-' if rto is None else f'{rto:.0f} s'} | {'PASS' if doc['passed'] else 'FAIL'} |")
    for check, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    print(f"results: {RESULTS}")
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
