"""Security controls over the real gunicorn, where test_security.py (in-process), test_api.py and
test_realtime.py do not already cover them:

- every operation the OpenAPI document marks as needing a bearer token refuses, before looking
  at anything else, a missing token, garbage, an expired token and a correctly signed token of
  a user that does not exist (both signed with the server's own SECRET_KEY) and writes nothing;
- Socket.IO refuses expired tokens and tokens of unknown users at connect time;
- one user cannot get into another user's notification room, whatever they send;
- a comment cannot be deleted through another item's path;
- no response ever carries a password hash; login 429s say when to come back.
"""
from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import pytest
import socketio
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from sqlalchemy import text

from testkit.apiclient import API

OPENAPI = json.loads((Path(__file__).resolve().parents[3] / "backend" / "app" /
                      "openapi.json").read_text())
DAY = 86400


def _forge(secret: str, claims: dict, age: int = 0, **changes) -> str:
    """A token signed with `secret` as the server signs them, `age` seconds old, carrying
    `claims` (those of a real token) with `changes`."""
    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return URLSafeTimedSerializer(secret, salt="synspirit-auth", signer=OldSigner).dumps(
        {**claims, **changes})


@pytest.fixture(scope="module")
def world(server, stack_env):
    api = API(server)
    owner, owner_token = api.register("acl")
    ids = api.items_with_comments(owner_token)
    ids["report"] = api.post("/api/reports", token=owner_token, json={
        "target_type": "post", "target_id": ids["post"], "reason": "r"}).json()["id"]
    secret = stack_env["SECRET_KEY"]
    claims = URLSafeTimedSerializer(secret, salt="synspirit-auth").loads(owner_token)
    return {"api": api, "owner": owner, "owner_token": owner_token, "ids": ids, "secret": secret,
            "claims": claims}


def _secured_operations():
    ops = []
    for path, methods in OPENAPI["paths"].items():
        for method, op in methods.items():
            if isinstance(op, dict) and op.get("security"):
                ops.append((method.upper(), path))
    return ops


SECURED = _secured_operations()
BAD_TOKENS = ["missing", "garbage", "expired", "unknown user", "other key", "stale user key",
              "without user key"]


def _body_for(method: str, path: str, ids: dict):
    if path == "/api/actions":
        return {"action": "like", "target_type": "post", "target_id": ids["post"]}
    if path.endswith("/comments") and method == "POST":
        return {"content": "sneaky"}
    if method in ("POST", "PATCH"):
        return {"title": "sneaky", "content": "sneaky"}
    return None


def _row_total(db) -> int:
    db.rollback()
    return db.execute(text(
        "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM articles)"
        " + (SELECT count(*) FROM post_comments) + (SELECT count(*) FROM article_comments)"
        " + (SELECT count(*) FROM reactions)"
        " + (SELECT count(*) FROM notifications) + (SELECT count(*) FROM notifications"
        "    WHERE read)"
        " + (SELECT count(*) FROM reports) + (SELECT count(*) FROM reports WHERE status = 'open')"
        " + (SELECT count(*) FROM moderation_log)"
        " + (SELECT count(*) FROM users WHERE banned_at IS NOT NULL OR role <> 'user')"
        )).scalar()


def test_the_document_marks_every_write_as_secured():
    """So that the parametrized test below covers every write (and /api/me)."""
    writes = {(m.upper(), p) for p, ms in OPENAPI["paths"].items() for m in ms
              if m in ("post", "patch", "delete", "put")} - {("POST", "/api/auth/register"),
                                                            ("POST", "/api/auth/login")}
    assert writes <= set(SECURED) and ("GET", "/api/me") in SECURED
    # Reads of one's own data too: the notifications; and the staff's reads.
    assert {("GET", "/api/notifications"), ("GET", "/api/reports"),
            ("GET", "/api/moderation/log")} <= set(SECURED)
    assert len(SECURED) == 24


@pytest.mark.parametrize("bad", BAD_TOKENS)
@pytest.mark.parametrize("method, path", SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_secured_operations_refuse_bad_tokens_and_write_nothing(world, db, method, path, bad):
    ids = world["ids"]
    kind = "article" if path.startswith("/api/articles") else "post"
    url = path.replace("{item_id}", str(ids[kind])).replace(
        "{comment_id}", str(ids[f"{kind}_comment"])).replace(
        "{report_id}", str(ids["report"])).replace("{username}", world["owner"]["username"])
    token = {
        "missing": None,
        "garbage": "x" * 40,
        "expired": _forge(world["secret"], world["claims"], age=DAY + 60),
        "unknown user": _forge(world["secret"], world["claims"], uid=2_000_000_000),
        "other key": _forge("not-the-servers-key", world["claims"]),
        # Issued before a password change, or for another account that had this id.
        "stale user key": _forge(world["secret"], world["claims"], key="0" * 32),
        # The format of tokens issued before tokens named their user's key.
        "without user key": _forge(world["secret"], {"uid": world["owner"]["id"]}),
    }[bad]
    before = _row_total(db)
    resp = world["api"].call(method, url, token=token, json=_body_for(method, path, ids))
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "unauthorized"
    assert _row_total(db) == before
    # The owner's own content is untouched.
    item = world["api"].get(f"/api/{kind}s/{ids[kind]}").json()
    assert item["title"] != "sneaky"


def test_forged_tokens_are_built_like_the_servers(world):
    """Control for the test above: a fresh token forged the same way with the server's key is
    accepted, so the refusals are about age and user, not about a malformed forgery."""
    fresh = _forge(world["secret"], world["claims"], age=0)
    almost = _forge(world["secret"], world["claims"], age=DAY - 120)
    for token in (fresh, almost):
        resp = world["api"].get("/api/me", token=token)
        assert resp.status_code == 200 and resp.json()["id"] == world["owner"]["id"]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_socketio_refuses_expired_tokens_and_unknown_users(world, server, transport):
    for token in (_forge(world["secret"], world["claims"], age=DAY + 60),
                  _forge(world["secret"], world["claims"], uid=2_000_000_000)):
        sio = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio.connect(server, transports=[transport], auth={"token": token}, wait_timeout=5)
        assert not sio.connected
    control = socketio.Client(reconnection=False)
    control.connect(server, transports=[transport], wait_timeout=5,
                    auth={"token": _forge(world["secret"], world["claims"])})
    assert control.connected
    control.disconnect()


class _Client:
    def __init__(self, server, token=None, auth=None):
        self.events: queue.Queue = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("notification", lambda data: self.events.put(data))
        self.sio.connect(server, transports=["websocket"], wait_timeout=10,
                         auth=auth if auth is not None else ({"token": token} if token else None))

    def notifications(self, wait: float) -> list:
        got, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                got.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got


@pytest.mark.usefixtures("celery_workers")
def test_nobody_joins_another_users_notification_room(world, server):
    """An attacker (signed in, or anonymous claiming the victim's id) tries every way into the
    victim's `user:<id>` room; the victim gets the notifications, the attacker none."""
    api = world["api"]
    victim, victim_token = api.register("vic")
    _, attacker_token = api.register("att")
    _, fan = api.register("fan")
    post = api.create("post", victim_token)
    victim_client = _Client(server, token=victim_token)
    attackers = [
        _Client(server, token=attacker_token),
        _Client(server, auth={"user_id": victim["id"], "uid": victim["id"]}),
        _Client(server, auth={"token": attacker_token, "uid": victim["id"],
                              "user_id": victim["id"], "room": f"user:{victim['id']}"}),
    ]
    room = f"user:{victim['id']}"
    for attacker in attackers:
        for payload in [{"target_type": "user", "target_id": victim["id"]},
                        {"target_type": room, "target_id": victim["id"]},
                        {"target_type": "post", "target_id": room}, room]:
            ack = attacker.sio.call("subscribe", payload, timeout=5)
            assert ack["ok"] is False, (payload, ack)
        # Events the server does not handle (no answer is expected, so no ack is waited for).
        for event, payload in [("join", room), ("join_room", room), ("enter_room", {"room": room}),
                               ("connect", {"token": victim_token}), ("notification", room)]:
            attacker.sio.emit(event, payload)
        # Subscribing to the post itself is allowed: it brings counts, not notifications.
        assert attacker.sio.call("subscribe", {"target_type": "post", "target_id": post["id"]},
                                 timeout=5) == {"ok": True}
    assert api.act(fan, "like", "post", post["id"]).status_code == 200
    assert api.post(f"/api/posts/{post['id']}/comments", token=fan,
                    json={"content": "hi"}).status_code == 201
    kinds = sorted(n["kind"] for n in victim_client.notifications(wait=5.0)
                   if n["target_id"] == post["id"])
    assert kinds == ["comment", "like"]
    for attacker in attackers:
        assert attacker.notifications(wait=0.5) == []
    for client in (victim_client, *attackers):
        client.sio.disconnect()


@pytest.mark.parametrize("kind", ["post", "article"])
def test_a_comment_cannot_be_deleted_through_another_items_path(world, kind):
    """The comment's own author, on an item they also own, still gets 404 when the comment
    belongs to another item (or to the other kind), and the comment stays."""
    api = world["api"]
    _, token = api.register("cmt")
    first = api.create(kind, token)
    second = api.create(kind, token)
    comment = api.post(f"/api/{kind}s/{first['id']}/comments", token=token,
                       json={"content": "mine"}).json()
    other_kind = "article" if kind == "post" else "post"
    third = api.create(other_kind, token)
    for path in (f"/api/{kind}s/{second['id']}/comments/{comment['id']}",
                 f"/api/{other_kind}s/{third['id']}/comments/{comment['id']}"):
        resp = api.delete(path, token=token)
        assert resp.status_code == 404, (path, resp.status_code)
    listed = api.get(f"/api/{kind}s/{first['id']}/comments").json()
    assert [c["id"] for c in listed["items"]] == [comment["id"]]


def test_no_response_carries_a_password_hash(world):
    api = world["api"]
    name = f"hash{time.time_ns() % 10**9}"
    register = api.post("/api/auth/register", json={"username": name, "password": "pw-123456"})
    login = api.post("/api/auth/login", json={"username": name, "password": "pw-123456"})
    token = register.json()["token"]
    post = api.create("post", token)
    comment = api.post(f"/api/posts/{post['id']}/comments", token=token, json={"content": "c"})
    responses = [register, login, api.get("/api/me", token=token), api.get(f"/api/posts/{post['id']}"),
                 api.get("/api/posts?per_page=5"), comment,
                 api.get(f"/api/posts/{post['id']}/comments")]
    for resp in responses:
        assert resp.status_code in (200, 201), resp.text
        assert "argon2" not in resp.text and "password" not in resp.text, resp.text


def test_login_rate_limit_answers_say_when_to_come_back(make_app):
    """A 429 carries Retry-After and the X-RateLimit-* headers, as documented."""
    client = make_app(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="2 per minute").test_client()
    ip = f"198.51.100.{time.time_ns() % 250 + 1}"
    name = f"rl{time.time_ns() % 10**9}"
    assert client.post("/api/auth/register", json={"username": name, "password": "pw-123456"}
                       ).status_code == 201
    for _ in range(2):
        first = client.post("/api/auth/login", json={"username": name, "password": "wrong-pw"},
                            headers={"X-Forwarded-For": ip})
        assert first.status_code == 401
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining",
                "X-RateLimit-Reset"} <= set(first.headers.keys())
    blocked = client.post("/api/auth/login", json={"username": name, "password": "pw-123456"},
                          headers={"X-Forwarded-For": ip})
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 60
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.get_json()["error"]["code"] == "rate_limited"
