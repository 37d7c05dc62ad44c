"""Bans and the moderation log, on the real gunicorn: a banned account's every token is refused
(403 `banned`), its login too, its live Socket.IO connections are closed on whichever web
instance holds them, and every staff action is in the log."""
from __future__ import annotations

import contextlib
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
import socketio

from testkit.processes import flask, free_port, web_command
from testkit.waiting import wait_until

PASSWORD = "correct-horse"  # testkit.apiclient.API.register's


def ban(api, token, username, **body):
    return api.post(f"/api/users/{username}/ban", token=token, json=body)


def unban(api, token, username):
    return api.delete(f"/api/users/{username}/ban", token=token)


def is_banned(resp) -> bool:
    return resp.status_code == 403 and resp.json()["error"]["code"] == "banned"


def test_a_banned_account_is_refused_everywhere_until_the_ban_is_lifted(
        api, register_user, moderator):
    user, token = register_user()
    post = api.create("post", token)
    _, mod_token = moderator

    resp = ban(api, mod_token, user["username"], reason="spam links")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": user["id"], "username": user["username"], "banned": True,
                           "until": None, "reason": "spam links"}

    me = api.get("/api/me", token=token)
    assert is_banned(me)
    assert me.json()["error"]["reason"] == "spam links" and me.json()["error"]["until"] is None
    assert is_banned(api.post("/api/posts", token=token, json={"title": "t", "content": "c"}))
    assert is_banned(api.act(token, "like", "post", post["id"]))
    assert is_banned(api.post("/api/auth/logout", token=token))
    # Reading stays public; what the account wrote stays (removal is a separate decision).
    assert api.get(f"/api/posts/{post['id']}").status_code == 200
    # The ban is told only to whoever has the password.
    login = {"username": user["username"], "password": PASSWORD}
    assert is_banned(api.post("/api/auth/login", json=login))
    wrong = api.post("/api/auth/login", json={**login, "password": "not-the-password"})
    assert wrong.status_code == 401

    assert unban(api, mod_token, user["username"]).status_code == 204
    assert api.get("/api/me", token=token).status_code == 200  # the same token works again
    assert api.post("/api/auth/login", json=login).status_code == 200
    assert unban(api, mod_token, user["username"]).status_code == 204  # not banned: nothing to do


def test_a_ban_with_an_end_ends_by_itself(api, register_user, moderator):
    user, token = register_user()
    until = datetime.now(timezone.utc) + timedelta(seconds=3)
    resp = ban(api, moderator[1], user["username"], reason="cool off",
               until=until.isoformat())
    assert resp.status_code == 200, resp.text
    assert datetime.fromisoformat(resp.json()["until"]) == until
    refused = api.get("/api/me", token=token)
    assert is_banned(refused)
    assert datetime.fromisoformat(refused.json()["error"]["until"]) == until
    time.sleep(max(0.0, (until - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    assert api.get("/api/me", token=token).status_code == 200


def test_only_staff_ban_and_staff_are_not_banned(api, register_user, moderator, site_admin):
    target, target_token = register_user()
    _, user_token = register_user()
    mod, mod_token = moderator
    for token in (user_token, target_token):
        assert ban(api, token, target["username"], reason="x").status_code == 403
        assert unban(api, token, target["username"]).status_code == 403
    assert ban(api, None, target["username"], reason="x").status_code == 401
    for staff in (mod["username"], "site_admin"):
        resp = ban(api, mod_token, staff, reason="x")
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "is_staff"
    assert ban(api, site_admin, f"nobody{uuid.uuid4().hex[:8]}", reason="x").status_code == 404
    assert api.get("/api/me", token=target_token).status_code == 200


@pytest.mark.parametrize("body", [
    {},
    {"reason": ""},
    {"reason": "   "},
    {"reason": "x" * 501},
    {"reason": 5},
    {"reason": "x", "until": "2020-01-01T00:00:00+00:00"},
    {"reason": "x", "until": "2999-01-01T00:00:00"},
    {"reason": "x", "until": "tomorrow"},
    {"reason": "x", "until": 1893456000},
])
def test_bad_bans_are_refused_and_change_nothing(api, register_user, moderator, body):
    user, token = register_user()
    resp = ban(api, moderator[1], user["username"], **body)
    assert resp.status_code == 422, resp.text
    assert set(resp.json()["error"]["fields"]) <= {"reason", "until"}
    assert api.get("/api/me", token=token).status_code == 200


@pytest.fixture(scope="module")
def second_server(procs, stack_env):
    """Another gunicorn on the same PostgreSQL and Redis: a second web instance."""
    port = free_port()
    procs.spawn("gunicorn-moderation", web_command(port),
                {**stack_env, "API_HOST": "127.0.0.1", "API_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(base + "/healthz", timeout=2).status_code == 200
        return False

    assert wait_until(answers, 90, 0.2), "the second gunicorn did not answer"
    yield base
    procs.stop("gunicorn-moderation")


def connect(url: str, token: str, transport: str) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(url, transports=[transport], auth={"token": token}, wait_timeout=10)
    return client


def test_a_ban_closes_the_accounts_live_connections_on_every_instance(
        api, server, second_server, register_user, moderator):
    user, token = register_user()
    _, bystander_token = register_user()
    clients = [connect(server, token, "websocket"), connect(second_server, token, "polling"),
               connect(second_server, token, "websocket")]
    bystander = connect(second_server, bystander_token, "websocket")
    try:
        assert all(c.connected for c in clients)
        assert ban(api, moderator[1], user["username"], reason="abuse").status_code == 200
        assert wait_until(lambda: not any(c.connected for c in clients), 10, 0.1), \
            [c.connected for c in clients]
        assert bystander.connected
        with pytest.raises(socketio.exceptions.ConnectionError):
            connect(second_server, token, "websocket")  # and it cannot come back
    finally:
        for c in (*clients, bystander):
            c.disconnect()


def test_the_log_says_who_did_what_to_whom_when_and_why(api, register_user, moderator,
                                                        site_admin):
    user, _ = register_user()
    mod, mod_token = moderator
    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    until = (datetime.now(timezone.utc) + timedelta(days=7)).isoformat()
    assert ban(api, mod_token, user["username"], reason="spam", until=until).status_code == 200
    assert unban(api, mod_token, user["username"]).status_code == 204

    resp = api.get("/api/moderation/log?limit=100", token=mod_token)
    assert resp.status_code == 200, resp.text
    mine = [e for e in resp.json()["items"] if e["target_id"] in (user["id"], mod["id"])
            and e["target_type"] == "user"]
    # Newest first: the unban, the ban, then the admin naming the moderator.
    assert [e["action"] for e in mine] == ["unban", "ban", "role"]
    unbanned, banned, named = mine
    assert banned["moderator"] == {"id": mod["id"], "username": mod["username"]}
    assert banned["reason"] == "spam"
    assert banned["detail"] == {"username": user["username"], "until": until}
    assert unbanned["reason"] is None and unbanned["moderator"]["id"] == mod["id"]
    assert named["moderator"]["username"] == "site_admin"
    assert named["detail"] == {"username": mod["username"], "role": "moderator"}
    assert all(datetime.fromisoformat(e["created_at"]) >= start for e in mine)
    ids = [e["id"] for e in resp.json()["items"]]
    assert ids == sorted(ids, reverse=True)


def test_the_log_pages_by_id_and_is_for_staff_only(api, register_user, moderator):
    _, mod_token = moderator
    for _ in range(3):
        user, _ = register_user()
        assert ban(api, mod_token, user["username"], reason="r").status_code == 200
    first = api.get("/api/moderation/log?limit=2", token=mod_token).json()
    assert len(first["items"]) == 2 and first["next_before"] == first["items"][-1]["id"]
    second = api.get(f"/api/moderation/log?limit=2&before={first['next_before']}",
                     token=mod_token).json()
    assert second["items"][0]["id"] < first["items"][-1]["id"]

    _, user_token = register_user()
    assert api.get("/api/moderation/log", token=user_token).status_code == 403
    assert api.get("/api/moderation/log").status_code == 401
    for bad in ("limit=0", "limit=101", "before=abc", "before=-1", "color=red"):
        resp = api.get(f"/api/moderation/log?{bad}", token=mod_token)
        assert resp.status_code == 422, (bad, resp.text)


def test_a_moderator_named_by_the_cli_sees_the_log(api, stack_env, register_user):
    user, token = register_user()
    assert api.get("/api/moderation/log", token=token).status_code == 403
    assert flask(stack_env, "users", "set-role", user["username"], "moderator").returncode == 0
    assert api.get("/api/moderation/log", token=token).status_code == 200
