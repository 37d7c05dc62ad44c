"""Disaster and recovery through the documented commands: users write posts, comments and likes
through the load balancer; a backup is taken (systemctl start synspirit-backup.service); the
database is dropped; `ansible-playbook restore.yml -e restore_redis=true` brings it back; the
site shows the same posts, comments and counts, and whatever came after the backup is gone."""
from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from conftest import INVENTORY, REPO, Api, app_env, wait_until
from probes import redis, redis_login

COUNTS_SETTLE = 10.0  # seconds for the workers to bring the count caches to the truth
LOGS = Path(os.environ.get("LAB_STATE", REPO / ".cache/lab")) / "run"
MARKER_KEY = "synspirit:restore-test"


def comment(api: Api, post_id: int, text: str) -> dict:
    r = api.request("POST", f"/api/posts/{post_id}/comments", json={"content": text})
    assert r.status_code == 201, r.text
    return r.json()


def comments(post_id: int) -> list[dict]:
    r = Api().request("GET", f"/api/posts/{post_id}/comments", params={"per_page": 100})
    assert r.status_code == 200, r.text
    return [{k: c[k] for k in ("id", "content", "author", "created_at", "counts")} for c in r.json()["items"]]


def snapshot(post_ids: list[int]) -> dict:
    """What a reader sees of the posts (views aside: every read counts one)."""
    seen = {}
    for post_id in post_ids:
        post = Api().post(post_id)
        post["counts"].pop("views")
        seen[post_id] = {"post": {k: post[k] for k in ("title", "content", "author", "created_at", "counts")},
                         "comments": comments(post_id)}
    return seen


def settled(expected: dict[int, dict], comment_likes: dict[int, int]) -> dict | None:
    """The snapshot once every post's like and comment counts equal `expected` and every
    comment's likes `comment_likes`, else None."""
    seen = snapshot(list(expected))
    posts_ok = all({k: seen[p]["post"]["counts"][k] for k in want} == want for p, want in expected.items())
    found = {c["id"]: c["counts"]["likes"] for p in seen for c in seen[p]["comments"]}
    comments_ok = all(found.get(c) == n for c, n in comment_likes.items())
    return seen if posts_ok and comments_ok else None


def login(username: str, password: str) -> int:
    r = Api().request("POST", "/api/auth/login", json={"username": username, "password": password})
    return r.status_code


def run_restore(*extra: str) -> subprocess.CompletedProcess:
    """ansible-playbook restore.yml on the lab, as docs/operations.md says; log in .cache/lab/run/."""
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run(["ansible-playbook", "-i", str(INVENTORY), "restore.yml", *extra],
                            cwd=REPO / "ansible", env=env, capture_output=True, text=True, timeout=600)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "restore.log").write_text(result.stdout + result.stderr)
    return result


@pytest.fixture(scope="module")
def disaster(inventory, lab_host):
    """The whole story, once: data, backup, later data, DROP DATABASE, restore. What was seen."""
    data_host = lab_host(inventory["groups"]["postgresql"][0])
    redis_host = lab_host(inventory["groups"]["redis"][0])
    redis_url = app_env(lab_host(inventory["groups"]["web"][0]))["REDIS_URL"]

    def redis_cmd(*command):
        return redis(redis_host, "127.0.0.1", 6379, redis_login(redis_url), list(command))[1]

    # Users write: 2 posts, 3 comments, likes on posts and on a comment.
    password = f"pw-{secrets.token_hex(8)}"
    alice = Api()
    r = alice.request("POST", "/api/auth/register",
                      json={"username": f"restore_{secrets.token_hex(4)}", "password": password})
    assert r.status_code == 201, r.text
    alice.user, alice.token = r.json()["user"], r.json()["token"]
    alice.session.headers["Authorization"] = f"Bearer {alice.token}"
    bob, carol = Api().register(), Api().register()
    first, second = alice.create_post(), bob.create_post()
    comment(bob, first, "A comment that must survive.")
    liked = comment(carol, first, "Another one, liked twice.")
    comment(alice, second, "On the second post.")
    for api in (bob, carol):
        api.like(first)
        r = api.request("POST", "/api/actions",
                        json={"action": "like", "target_type": "post_comment", "target_id": liked["id"]})
        assert r.status_code == 200, r.text
    carol.like(second)
    expected = {first: {"likes": 2, "comments": 2}, second: {"likes": 1, "comments": 1}}
    comment_likes = {liked["id"]: 2}
    before = wait_until(lambda: settled(expected, comment_likes), COUNTS_SETTLE, interval=0.5)
    assert before, f"counts never settled: {snapshot([first, second])}"
    assert redis_cmd("SET", MARKER_KEY, "in the backup") == "OK"

    # The backup, then more activity that the restore must undo.
    data_host.run_expect([0], "systemctl start synspirit-backup.service")
    backup = data_host.check_output("/usr/local/sbin/synspirit-restore --list").split()[-1]
    later = alice.create_post()
    assert redis_cmd("SET", MARKER_KEY, "after the backup") == "OK"

    # Disaster: the database is gone.
    data_host.run_expect([0], "runuser -u postgres -- psql -q -c 'DROP DATABASE synspirit WITH (FORCE)'")
    # (an instance may answer from its item cache for up to ITEM_CACHE_TTL, 0.5 s)
    assert wait_until(lambda: Api().request("GET", f"/api/posts/{first}").status_code >= 500, 5)

    started = time.monotonic()
    result = run_restore("-e", "restore_redis=true")
    restore_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    after = wait_until(lambda: settled(expected, comment_likes), COUNTS_SETTLE, interval=0.5)
    yield {"before": before, "after": after, "posts": [first, second], "later": later,
           "alice": (alice.user["username"], password), "backup": backup, "log": result.stdout,
           "marker": redis_cmd("GET", MARKER_KEY), "seconds": restore_seconds}
    redis_cmd("DEL", MARKER_KEY)


def test_restore_uses_the_latest_backup(disaster):
    """Without restore_backup, the playbook restores the newest backup."""
    assert f"restoring from /var/backups/synspirit/{disaster['backup']}" in disaster["log"]


def test_posts_comments_and_counts_come_back(disaster):
    """Every post, comment, like and comment count reads the same as before the disaster."""
    assert disaster["after"] is not None, "counts did not settle after the restore"
    assert disaster["after"] == disaster["before"]


def test_users_can_log_in_again(disaster):
    """A user registered before the backup logs in with the same password."""
    assert login(*disaster["alice"]) == 200


def test_what_came_after_the_backup_is_gone(disaster):
    """A post written after the backup does not exist after the restore (the dump is the truth)."""
    assert Api().request("GET", f"/api/posts/{disaster['later']}").status_code == 404


def test_redis_is_restored_too(disaster):
    """With restore_redis=true, Redis holds the value it had at backup time."""
    assert disaster["marker"] == "in the backup"


def test_the_site_takes_new_writes_after_the_restore(disaster):
    """New posts get fresh ids (sequences restored) and their likes are counted again."""
    post_id = Api().register().create_post()
    assert post_id > max(disaster["posts"])
    Api().register().like(post_id)
    assert wait_until(lambda: Api().post(post_id)["counts"]["likes"] == 1, COUNTS_SETTLE, interval=0.5)
