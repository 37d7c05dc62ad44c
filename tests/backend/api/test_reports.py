"""Reports and removal on the real stack: users report posts, articles and comments; staff list
the open reports and resolve them by removing the target (404 but for staff, gone from lists,
rankings and its parent's count, its author notified, its live subscribers told and
unsubscribed) or by dismissing them; new reports reach the staff live."""
from __future__ import annotations

import queue
import time

import pytest
import socketio
from app.realtime.queue import CHANNEL, RedisQueue

from testkit.waiting import wait_until

pytestmark = pytest.mark.usefixtures("celery_workers")


def report(api, token, target_type, target_id, reason="spam"):
    return api.post("/api/reports", token=token,
                    json={"target_type": target_type, "target_id": target_id, "reason": reason})


def resolve(api, token, report_id, action, **extra):
    return api.post(f"/api/reports/{report_id}/resolve", token=token,
                    json={"action": action, **extra})


def open_reports(api, token, **params) -> list[dict]:
    resp = api.get("/api/reports", token=token, params={"limit": 100, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


class Listener:
    """A real Socket.IO client recording the events it gets."""

    def __init__(self, url: str, token: str | None = None):
        self.events: queue.Queue = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        for name in ("counts", "removed", "report", "notification"):
            self.sio.on(name, lambda data, name=name: self.events.put((name, data)))
        self.sio.connect(url, transports=["websocket"], auth={"token": token} if token else None,
                         wait_timeout=10)

    def subscribe(self, kind: str, item_id: int) -> dict:
        return self.sio.call("subscribe", {"target_type": kind, "target_id": item_id},
                             timeout=10)

    def collect(self, seconds: float) -> list[tuple[str, int]]:
        """(event, target_id) of every event received in the next `seconds`."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                name, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            got.append((name, data.get("target_id")))
        return got

    def next(self, name: str, match=lambda d: True, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, data = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if got == name and match(data):
                return data
        return None


@pytest.fixture
def listen(server):
    made = []

    def make(token=None):
        made.append(Listener(server, token))
        return made[-1]

    yield make
    for listener in made:
        listener.sio.disconnect()


def test_a_user_reports_once_per_target_while_it_is_open(api, register_user):
    author, author_token = register_user()
    reporter, token = register_user()
    post = api.create("post", author_token)
    resp = report(api, token, "post", post["id"], "spam links")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert {k: body[k] for k in ("target_type", "target_id", "reason", "status")} == {
        "target_type": "post", "target_id": post["id"], "reason": "spam links", "status": "open"}
    assert body["reporter"] == {"id": reporter["id"], "username": reporter["username"]}
    assert body["resolved_by"] is None and body["resolved_at"] is None

    again = report(api, token, "post", post["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reported"
    _, other = register_user()
    assert report(api, other, "post", post["id"]).status_code == 201  # another user may


@pytest.mark.parametrize("body, field", [
    ({"target_type": "user", "target_id": 1, "reason": "x"}, "target_type"),
    ({"target_type": "post", "target_id": 0, "reason": "x"}, "target_id"),
    ({"target_type": "post", "target_id": "1", "reason": "x"}, "target_id"),
    ({"target_type": "post", "target_id": 1, "reason": " "}, "reason"),
    ({"target_type": "post", "target_id": 1, "reason": "x" * 501}, "reason"),
    ({"target_type": "post", "target_id": 1}, "reason"),
])
def test_bad_reports_are_refused(api, register_user, body, field):
    _, token = register_user()
    resp = api.post("/api/reports", token=token, json=body)
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["error"]["fields"]


def test_reporting_needs_a_token_and_a_target(api, register_user):
    _, token = register_user()
    assert report(api, None, "post", 1).status_code == 401
    missing = report(api, token, "article", 2**31 - 1)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_only_staff_read_and_resolve_reports(api, register_user, moderator):
    _, author_token = register_user()
    _, token = register_user()
    post = api.create("post", author_token)
    made = report(api, token, "post", post["id"]).json()
    assert api.get("/api/reports", token=token).status_code == 403
    assert api.get("/api/reports").status_code == 401
    assert resolve(api, token, made["id"], "remove").status_code == 403
    assert resolve(api, author_token, made["id"], "dismiss").status_code == 403
    assert api.get(f"/api/posts/{post['id']}").status_code == 200
    _, mod_token = moderator
    for bad in ({"action": "delete"}, {}, {"action": "remove", "reason": ""}):
        resp = api.post(f"/api/reports/{made['id']}/resolve", token=mod_token, json=bad)
        assert resp.status_code == 422, (bad, resp.text)
    assert resolve(api, mod_token, 2**31 - 1, "dismiss").status_code == 404
    for bad in ("status=closed", "limit=0", "before=x", "sort=new"):
        assert api.get(f"/api/reports?{bad}", token=mod_token).status_code == 422, bad


def test_staff_see_open_reports_with_what_they_are_about(api, register_user, moderator):
    author, author_token = register_user()
    _, token = register_user()
    article = api.create("article", author_token, title="Reported title", content="Bad words")
    comment = api.post(f"/api/articles/{article['id']}/comments", token=author_token,
                       json={"content": "a rude comment"}).json()
    on_article = report(api, token, "article", article["id"], "offensive").json()
    on_comment = report(api, token, "article_comment", comment["id"], "rude").json()
    listed = {r["id"]: r for r in open_reports(api, moderator[1])}
    assert listed[on_article["id"]]["target"] == {
        "author": {"id": author["id"], "username": author["username"]},
        "title": "Reported title", "content": "Bad words", "removed": False}
    assert listed[on_comment["id"]]["target"]["content"] == "a rude comment"
    ids = list(listed)
    assert ids == sorted(ids, reverse=True)  # newest first


def test_dismissing_keeps_the_item_and_logs_it(api, register_user, moderator):
    _, author_token = register_user()
    _, token = register_user()
    mod, mod_token = moderator
    post = api.create("post", author_token)
    made = report(api, token, "post", post["id"]).json()
    resp = resolve(api, mod_token, made["id"], "dismiss", reason="not spam")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "dismissed"
    assert resp.json()["resolved_by"] == {"id": mod["id"], "username": mod["username"]}
    again = resolve(api, mod_token, made["id"], "remove")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_resolved"
    assert api.get(f"/api/posts/{post['id']}").status_code == 200
    assert made["id"] not in {r["id"] for r in open_reports(api, mod_token)}
    assert made["id"] in {r["id"] for r in open_reports(api, mod_token, status="dismissed")}
    assert report(api, token, "post", post["id"]).status_code == 201  # may report it again
    entry = next(e for e in api.get("/api/moderation/log?limit=100", token=mod_token)
                 .json()["items"] if e["action"] == "dismiss" and e["target_id"] == made["id"])
    assert entry["target_type"] == "report" and entry["reason"] == "not spam"
    assert entry["detail"] == {"target_type": "post", "target_id": post["id"]}


def _ids(api, path, token=None) -> set[int]:
    resp = api.get(path, token=token, params={"per_page": 100})
    assert resp.status_code == 200, resp.text
    return {item["id"] for item in resp.json()["items"]}


def test_removing_a_post_takes_it_out_of_the_site_but_not_from_staff(
        api, register_user, moderator, listen, stack_env):
    author, author_token = register_user()
    _, token = register_user()
    _, other_token = register_user()
    mod, mod_token = moderator
    post = api.create("post", author_token, title="Buy now", content="spam")
    kept = api.create("post", author_token)
    assert post["id"] in _ids(api, "/api/posts?sort=new")
    subscriber = listen()
    assert subscriber.subscribe("post", post["id"]) == {"ok": True}
    assert subscriber.subscribe("post", kept["id"]) == {"ok": True}
    first = report(api, token, "post", post["id"], "spam").json()
    second = report(api, other_token, "post", post["id"], "ads").json()

    resp = resolve(api, mod_token, first["id"], "remove", reason="advertising")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "removed"
    statuses = {r["id"]: r["status"] for r in open_reports(api, mod_token, status="removed")}
    assert statuses.get(first["id"]) == statuses.get(second["id"]) == "removed"

    # Everyone but staff: 404, and nothing can be done to it.
    for reader in (None, token, author_token):
        assert api.get(f"/api/posts/{post['id']}", token=reader).status_code == 404
    assert api.get(f"/api/posts/{post['id']}/comments").status_code == 404
    assert api.act(token, "like", "post", post["id"]).status_code == 404
    assert api.post(f"/api/posts/{post['id']}/comments", token=token,
                    json={"content": "hi"}).status_code == 404
    assert api.patch(f"/api/posts/{post['id']}", token=author_token,
                     json={"title": "edited"}).status_code == 404
    assert report(api, token, "post", post["id"]).status_code == 404
    for sort in ("new", "hot"):
        listed = _ids(api, f"/api/posts?sort={sort}")
        assert post["id"] not in listed and kept["id"] in listed
    shown = api.get(f"/api/posts/{post['id']}", token=mod_token)
    assert shown.status_code == 200 and shown.json()["removed"] is True
    assert shown.json()["title"] == "Buy now"

    # Its subscribers are told once, then hear nothing more of it; others carry on.
    assert subscriber.next("removed", lambda d: d["target_id"] == post["id"]) == {
        "target_type": "post", "target_id": post["id"]}
    queue_ = RedisQueue(stack_env["REDIS_URL"], channel=CHANNEL, write_only=True)
    for item in (post, kept):
        queue_.emit("counts", {"target_type": "post", "target_id": item["id"], "counts": {}},
                    room=f"post:{item['id']}", namespace="/")
    got = subscriber.collect(2.0)
    assert ("counts", kept["id"]) in got and ("counts", post["id"]) not in got
    assert subscriber.subscribe("post", post["id"])["ok"] is False

    # Its author is told, without naming the moderator.
    notes = api.get("/api/notifications", token=author_token).json()["items"]
    notice = next(n for n in notes if n["type"] == "moderation")
    assert (notice["target_type"], notice["target_id"]) == ("post", post["id"])
    assert notice["actor"] is None and notice["read"] is False

    entry = next(e for e in api.get("/api/moderation/log?limit=100", token=mod_token)
                 .json()["items"] if e["action"] == "remove" and e["target_id"] == post["id"])
    assert entry["target_type"] == "post" and entry["reason"] == "advertising"
    assert entry["moderator"]["id"] == mod["id"] and entry["detail"] == {"report_id": first["id"]}


def test_removing_a_comment_takes_it_out_of_its_parents_list_and_count(
        api, register_user, moderator, listen):
    _, author_token = register_user()
    _, token = register_user()
    post = api.create("post", author_token)
    rude = api.post(f"/api/posts/{post['id']}/comments", token=token,
                    json={"content": "rude"}).json()
    fine = api.post(f"/api/posts/{post['id']}/comments", token=token,
                    json={"content": "fine"}).json()
    assert wait_until(lambda: api.counts("post", post["id"])["comments"] == 2, 10, 0.2)
    subscriber = listen()
    assert subscriber.subscribe("post", post["id"])["ok"]
    made = report(api, author_token, "post_comment", rude["id"]).json()
    assert resolve(api, moderator[1], made["id"], "remove").status_code == 200

    assert _ids(api, f"/api/posts/{post['id']}/comments") == {fine["id"]}
    assert wait_until(lambda: api.counts("post", post["id"])["comments"] == 1, 10, 0.2)
    assert subscriber.next("removed", lambda d: d["target_id"] == rude["id"]) == {
        "target_type": "post_comment", "target_id": rude["id"],
        "parent": {"target_type": "post", "target_id": post["id"]}}
    assert api.act(author_token, "like", "post_comment", rude["id"]).status_code == 404
    assert api.delete(f"/api/posts/{post['id']}/comments/{rude['id']}",
                      token=token).status_code == 404
    assert api.get(f"/api/posts/{post['id']}").status_code == 200  # the post stays


def test_new_reports_reach_the_staff_live(api, register_user, moderator, listen):
    _, author_token = register_user()
    _, token = register_user()
    staff = listen(moderator[1])
    user = listen(token)
    post = api.create("post", author_token)
    made = report(api, token, "post", post["id"], "live").json()
    assert staff.next("report", lambda d: d["id"] == made["id"]) == made
    assert user.next("report", timeout=1.0) is None
