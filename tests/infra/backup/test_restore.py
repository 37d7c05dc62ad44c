"""Point-in-time recovery through the documented command: users write (A), the time T is noted,
they write more (B); `ansible-playbook restore.yml -e restore_target_time=T` brings the whole
cluster back to T: A is there with its counts, B is not, logins of A's users work and B's do
not, every count equals its rows, Patroni runs three members on a new timeline, and the site
takes new writes. restore.yml refuses, changing nothing, an instant the repository does not cover."""
from __future__ import annotations

import datetime
import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from conftest import INVENTORY, REPO, Api, app_env, wait_until
from probes import redis, redis_login

COUNTS_SETTLE = 15.0  # seconds for the workers to bring the count caches to the truth
LOGS = Path(os.environ.get("LAB_STATE", REPO / ".cache/lab")) / "run"


def comment(api: Api, post_id: int, text: str) -> dict:
    r = api.request("POST", f"/api/posts/{post_id}/comments", json={"content": text})
    assert r.status_code == 201, r.text
    return r.json()


def like_comment(api: Api, comment_id: int) -> None:
    r = api.request("POST", "/api/actions", json={"action": "like", "target_type": "post_comment",
                                                   "target_id": comment_id})
    assert r.status_code == 200, r.text


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
    """The snapshot once every post's counts equal `expected` and every comment's likes
    `comment_likes`, else None."""
    seen = snapshot(list(expected))
    posts_ok = all({k: seen[p]["post"]["counts"][k] for k in want} == want for p, want in expected.items())
    found = {c["id"]: c["counts"]["likes"] for p in seen for c in seen[p]["comments"]}
    comments_ok = all(found.get(c) == n for c, n in comment_likes.items())
    return seen if posts_ok and comments_ok else None


def login(username: str, password: str) -> int:
    body = {"username": username, "password": password}
    return Api().request("POST", "/api/auth/login", json=body).status_code


def register(prefix: str) -> tuple[Api, str]:
    """A user with a known password (to log in again later)."""
    api, password = Api(), f"pw-{secrets.token_hex(8)}"
    r = api.request("POST", "/api/auth/register",
                    json={"username": f"{prefix}_{secrets.token_hex(4)}", "password": password})
    assert r.status_code == 201, r.text
    api.user, api.token = r.json()["user"], r.json()["token"]
    api.session.headers["Authorization"] = f"Bearer {api.token}"
    return api, password


def run_restore(*extra: str, log: str = "restore.log") -> subprocess.CompletedProcess:
    """ansible-playbook restore.yml on the lab, as docs/operations.md says; log in .cache/lab/run/."""
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run(["ansible-playbook", "-i", str(INVENTORY), "restore.yml", *extra],
                            cwd=REPO / "ansible", env=env, capture_output=True, text=True, timeout=1200)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / log).write_text(result.stdout + result.stderr)
    return result


def utc(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def members(lab_host, inventory) -> list[dict]:
    return json.loads(lab_host(inventory["groups"]["postgresql"][0]).check_output(
        "patronictl -c /etc/patroni/config.yml list --format json"))


def rows_and_counts(lab_host, inventory, post_ids: list[int]) -> tuple[dict, dict]:
    """Per post: its count columns, and the counts of its rows (likes, comments), on the primary."""
    leader = next(m["Member"] for m in members(lab_host, inventory) if m["Role"] == "Leader")
    ids = ",".join(map(str, post_ids))
    query = ("SELECT p.id, p.likes_count, p.comments_count, "
             "(SELECT count(*) FROM reactions r WHERE r.post_id = p.id AND r.action = 'like'), "
             "(SELECT count(*) FROM post_comments c WHERE c.post_id = p.id) "
             f"FROM posts p WHERE p.id IN ({ids})")
    out = lab_host(leader).check_output(
        "cd /tmp && runuser -u postgres -- psql -XAt -F ' ' -d synspirit -c %s", query)
    cached, truth = {}, {}
    for line in out.splitlines():
        pid, likes, ncomments, rlikes, rcomments = map(int, line.split())
        cached[pid], truth[pid] = (likes, ncomments), (rlikes, rcomments)
    return cached, truth


@pytest.mark.parametrize("target, message", [
    ("2000-01-01 00:00:00+00", "is outside what the repository covers"),
    ("2999-01-01 00:00:00+00", "is in the future"),
    ("yesterday", "must be an instant with its time zone"),
])
def test_an_instant_the_repository_does_not_cover_is_refused(target, message, lab_host, inventory):
    """restore.yml stops with a clear message, before stopping anything: same timeline, the
    application still answering."""
    timeline = {m["TL"] for m in members(lab_host, inventory)}
    result = run_restore("-e", f"restore_target_time={target}", log="restore-refused.log")
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-3000:]
    assert "Stop the application" not in result.stdout
    assert {m["TL"] for m in members(lab_host, inventory)} == timeline
    assert Api().request("GET", "/healthz").status_code == 200


@pytest.fixture(scope="module")
def story(inventory, lab_host):
    """A, T, B, the restore to T; what was seen before and after."""
    redis_host = lab_host(inventory["groups"]["redis"][0])
    redis_url = app_env(lab_host(inventory["groups"]["web"][0]))["REDIS_URL"]

    def redis_cmd(*command):
        return redis(redis_host, "127.0.0.1", 6379, redis_login(redis_url), list(command))[1]

    # A: users, posts, comments, likes on posts and on a comment.
    alice, alice_password = register("pitr_a")
    bob, carol = Api().register(), Api().register()
    first, second = alice.create_post(), bob.create_post()
    comment(bob, first, "A comment from before T.")
    liked = comment(carol, first, "Another one, liked twice.")
    comment(alice, second, "On the second post.")
    for api in (bob, carol):
        api.like(first)
        like_comment(api, liked["id"])
    carol.like(second)
    expected = {first: {"likes": 2, "comments": 2}, second: {"likes": 1, "comments": 1}}
    comment_likes = {liked["id"]: 2}
    before = wait_until(lambda: settled(expected, comment_likes), COUNTS_SETTLE, interval=0.5)
    assert before, f"counts never settled: {snapshot([first, second])}"

    time.sleep(1.0)
    target = time.time()
    time.sleep(1.0)

    # B: a new user and post, a like and a comment on A's post, a like on A's comment.
    dave, dave_password = register("pitr_b")
    later = dave.create_post()
    dave.like(first)
    comment(dave, first, "Written after T.")
    like_comment(dave, liked["id"])
    assert wait_until(lambda: Api().post(first)["counts"]["likes"] == 3, COUNTS_SETTLE, interval=0.5)
    assert redis_cmd("SET", "synspirit:pitr-test", "after T") == "OK"
    timeline = max(int(m["TL"]) for m in members(lab_host, inventory))

    started = time.monotonic()
    result = run_restore("-e", f"restore_target_time={utc(target)}")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    after = wait_until(lambda: settled(expected, comment_likes), COUNTS_SETTLE, interval=0.5)
    return {"before": before, "after": after, "posts": [first, second], "later": later, "liked": liked["id"],
            "alice": (alice.user["username"], alice_password), "dave": (dave.user["username"], dave_password),
            "log": result.stdout, "seconds": seconds, "timeline": timeline,
            "marker": redis_cmd("GET", "synspirit:pitr-test")}


def test_what_was_written_before_t_is_back_with_its_counts(story):
    """Every post, comment, like and count of A reads as it did at T."""
    assert story["after"] is not None, "counts did not settle after the restore"
    assert story["after"] == story["before"]


def test_what_was_written_after_t_is_gone(story):
    """B's post does not exist; nor does B's comment on A's post (the comments read as at T)."""
    assert Api().request("GET", f"/api/posts/{story['later']}").status_code == 404
    texts = [c["content"] for p in story["after"].values() for c in p["comments"]]
    assert "Written after T." not in texts


def test_logins_are_those_of_t(story):
    """A user of A logs in with the same password; the user registered after T does not exist."""
    assert login(*story["alice"]) == 200
    assert login(*story["dave"]) == 401


def test_counts_equal_their_rows(story, lab_host, inventory):
    """On the restored primary, every post's like and comment counts equal its rows."""
    cached, truth = rows_and_counts(lab_host, inventory, story["posts"])
    assert cached == truth
    assert truth[story["posts"][0]] == (2, 2)


def test_the_cluster_runs_three_members_on_a_new_timeline(story, lab_host, inventory):
    """Patroni's history goes on from the restored data: one leader, a synchronous standby, every
    member running, a timeline above the one before the restore; archiving works on it."""
    rows = members(lab_host, inventory)
    assert sorted(m["Member"] for m in rows) == inventory["groups"]["postgresql"]
    assert sorted(m["Role"] for m in rows).count("Leader") == 1, rows
    assert [m["Role"] for m in rows].count("Sync Standby") == 1, rows
    assert all(m["State"] in ("running", "streaming") for m in rows), rows
    assert min(int(m["TL"]) for m in rows) > story["timeline"], rows
    leader = lab_host(next(m["Member"] for m in rows if m["Role"] == "Leader"))
    auto_conf = leader.file("/var/lib/postgresql/15/main/postgresql.auto.conf").content_string
    assert "recovery_target" not in auto_conf
    lab_host(inventory["groups"]["backup"][0]).run_expect([0], "synspirit-backup check")


def test_redis_forgot_the_abandoned_future(story):
    """Redis' application database was emptied: a key written after T is gone."""
    assert story["marker"] is None


def test_the_site_takes_new_writes(story):
    """A new post is written and read back with its own counts (the sequences went back to T too:
    its id may be one B's posts had, which is why Redis' cached counts had to go); a like on
    it is counted."""
    author = Api().register()
    post_id = author.create_post()
    assert Api().post(post_id)["counts"]["likes"] == 0
    Api().register().like(post_id)
    assert wait_until(lambda: Api().post(post_id)["counts"]["likes"] == 1, COUNTS_SETTLE, interval=0.5)


def test_the_restore_took_minutes_not_hours(story):
    """The whole playbook (stop, restore, recovery, two replicas cloned, application back) on a
    small database: recorded for docs/operations.md, bounded to catch a hang."""
    print(f"restore.yml took {story['seconds']:.0f} s")
    assert story["seconds"] < 900
