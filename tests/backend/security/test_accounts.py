"""Sessions under the user's control, in-process against the real PostgreSQL and Redis: logout
revokes one token, a password change revokes every older one, and a token names its user's row
(not just an id that a restore can hand to a newer account)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text


def _register(client, name=None, password="long-enough-pw"):
    name = name or f"a{uuid.uuid4().hex[:12]}"
    resp = client.post("/api/auth/register", json={"username": name, "password": password})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    return body["user"], body["token"]


def _login(client, name, password="long-enough-pw"):
    resp = client.post("/api/auth/login", json={"username": name, "password": password})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["token"]


def _me(client, token):
    return client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(make_app):
    # Each test uses its own accounts; the login budget must not get in the way here.
    return make_app(LOGIN_RATE_LIMIT="1000 per minute").test_client()


def test_logout_refuses_that_token_and_only_that_one(client):
    """After POST /api/auth/logout the token is refused; the user's other sessions go on."""
    user, first = _register(client)
    second = _login(client, user["username"])
    assert _me(client, first).status_code == 200

    resp = client.post("/api/auth/logout", headers=_auth(first))
    assert resp.status_code == 204 and resp.get_data() == b""

    refused = _me(client, first)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert client.post("/api/posts", headers=_auth(first),
                       json={"title": "t", "content": "c"}).status_code == 401
    assert client.post("/api/auth/logout", headers=_auth(first)).status_code == 401
    assert _me(client, second).get_json()["id"] == user["id"]


def test_logout_needs_a_token(client):
    assert client.post("/api/auth/logout").status_code == 401


def test_password_change_refuses_every_older_token(client):
    """The new token works; every token issued before the change, and the old password, do not."""
    user, first = _register(client)
    second = _login(client, user["username"])

    resp = client.post("/api/auth/password", headers=_auth(first), json={
        "current_password": "long-enough-pw", "new_password": "a-new-long-password"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["user"]["id"] == user["id"]

    assert _me(client, body["token"]).get_json()["id"] == user["id"]
    assert _me(client, first).status_code == 401
    assert _me(client, second).status_code == 401
    old = client.post("/api/auth/login", json={"username": user["username"],
                                               "password": "long-enough-pw"})
    assert old.status_code == 401
    assert _login(client, user["username"], "a-new-long-password")


def test_password_change_with_a_wrong_current_password_changes_nothing(client):
    user, token = _register(client)
    resp = client.post("/api/auth/password", headers=_auth(token), json={
        "current_password": "not-my-password", "new_password": "a-new-long-password"})
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "wrong_password"
    assert _me(client, token).status_code == 200
    assert _login(client, user["username"])


@pytest.mark.parametrize("new_password", ["short", "x" * 129, "has\u0000nul-in-it"])
def test_password_change_to_a_weak_password_is_refused(client, new_password):
    user, token = _register(client)
    resp = client.post("/api/auth/password", headers=_auth(token), json={
        "current_password": "long-enough-pw", "new_password": new_password})
    assert resp.status_code == 422
    assert "new_password" in resp.get_json()["error"]["fields"]
    assert _me(client, token).status_code == 200
    assert _login(client, user["username"])


def test_password_guesses_through_a_stolen_token_share_the_accounts_login_budget(make_app):
    """Whoever holds a token cannot guess the password faster than a login could."""
    client = make_app(LOGIN_RATE_LIMIT="2 per minute").test_client()
    user, token = _register(client)
    codes = [client.post("/api/auth/password", headers=_auth(token), json={
        "current_password": f"guess-{i}", "new_password": "a-new-long-password"}).status_code
        for i in range(3)]
    assert codes == [403, 403, 429]
    blocked = client.post("/api/auth/login", json={"username": user["username"],
                                                   "password": "long-enough-pw"})
    assert blocked.status_code == 429


def test_a_token_does_not_survive_its_user_id_being_reused(client, db):
    """As after a restore from a backup older than the account: the id sequence goes back and
    the next new account gets the same id. The old token must not sign in as that account."""
    lost, lost_token = _register(client)
    # Simulate the restore: the newest account is gone and the sequence is back before it.
    newest = db.execute(text("SELECT max(id) FROM users")).scalar()
    assert newest == lost["id"], "another session registered meanwhile"
    db.execute(text("DELETE FROM users WHERE id = :id"), {"id": lost["id"]})
    db.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), :id, false)"),
               {"id": lost["id"]})
    db.commit()

    newcomer, newcomer_token = _register(client)
    assert newcomer["id"] == lost["id"]
    assert _me(client, lost_token).status_code == 401
    assert _me(client, newcomer_token).get_json()["username"] == newcomer["username"]


def test_usernames_are_unique_whatever_the_case(client):
    """"Alice" cannot register next to "alice": 409, as for the same name."""
    user, _ = _register(client)
    for other in (user["username"].upper(), user["username"].capitalize()):
        resp = client.post("/api/auth/register",
                           json={"username": other, "password": "long-enough-pw"})
        assert resp.status_code == 409, other
        assert resp.get_json()["error"]["code"] == "username_taken"


def test_login_takes_the_name_in_any_case(client):
    user, _ = _register(client, name=f"Mixed{uuid.uuid4().hex[:10]}")
    for spelled in (user["username"].lower(), user["username"].upper()):
        resp = client.post("/api/auth/login",
                           json={"username": spelled, "password": "long-enough-pw"})
        assert resp.status_code == 200, spelled
        assert resp.get_json()["user"] == user  # the name as registered
