"""Authentication controls, in-process against the real PostgreSQL and Redis (the rate-limit
counters live in Redis, so every web instance shares them)."""
from __future__ import annotations

import time
import uuid

import pytest
from itsdangerous import URLSafeTimedSerializer


def _register(client, name=None, password="long-enough-pw"):
    name = name or f"s{uuid.uuid4().hex[:12]}"
    resp = client.post("/api/auth/register", json={"username": name, "password": password})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return name, resp.get_json()["token"]


def _login(client, name, password, ip):
    return client.post("/api/auth/login", json={"username": name, "password": password},
                       headers={"X-Forwarded-For": ip})


def _ip() -> str:
    # A fresh client address per test (documentation range, never routed; header only).
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}, 203.0.113.{uuid.uuid4().int % 250}"


def test_failed_logins_from_one_client_are_limited(make_app):
    """After LOGIN_RATE_LIMIT failures from one address, even other accounts get 429 there."""
    client = make_app(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="3 per minute").test_client()
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    victim, _ = _register(client)
    names = [_register(client)[0] for _ in range(4)]
    codes = [_login(client, n, "wrong-password", ip).status_code for n in names[:3]]
    assert codes == [401, 401, 401]
    blocked = _login(client, names[3], "long-enough-pw", ip)
    assert blocked.status_code == 429
    assert blocked.get_json()["error"]["code"] == "rate_limited"
    # Another address is unaffected.
    assert _login(client, victim, "long-enough-pw", "192.0.2.77").status_code == 200


def test_failed_logins_for_one_account_are_limited_across_clients(make_app):
    """Guessing one account's password from many addresses is limited per account too."""
    client = make_app(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="3 per minute").test_client()
    name, _ = _register(client)
    codes = [_login(client, name, "wrong-password", f"192.0.2.{i}").status_code
             for i in range(1, 4)]
    assert codes == [401, 401, 401]
    assert _login(client, name, "long-enough-pw", "192.0.2.200").status_code == 429


def test_concurrent_wrong_passwords_get_no_more_than_the_limit(make_app):
    """40 wrong passwords at once, through two instances: at most LOGIN_RATE_LIMIT of them reach
    the password check (401), the rest get 429. Counted only after the check, all 40 got 401."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    # A password hash that takes a while to check but little memory (the hash carries its own
    # parameters): every attempt is in flight before the first one could have been counted.
    config = dict(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="5 per minute",
                  ARGON2_TIME_COST=40, ARGON2_MEMORY_COST=1024, ARGON2_PARALLELISM=1)
    instances = [make_app(**config), make_app(**config)]
    name, _ = _register(instances[0].test_client())
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    start = Barrier(40)

    def attempt(i):
        client = instances[i % 2].test_client()
        start.wait()
        return _login(client, name, f"wrong-{i}", ip).status_code

    with ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(attempt, range(40)))
    assert codes.count(401) <= 5, codes
    assert codes.count(401) + codes.count(429) == 40, codes


def test_successful_logins_are_not_limited(make_app):
    client = make_app(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="3 per minute").test_client()
    name, _ = _register(client)
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    assert [_login(client, name, "long-enough-pw", ip).status_code
            for _ in range(6)] == [200] * 6


def test_the_limit_is_shared_between_instances(make_app):
    """Two app instances (two web processes) draw on the same Redis-backed budget."""
    first = make_app(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="2 per minute").test_client()
    second = make_app(TRUSTED_PROXY_COUNT=1, LOGIN_RATE_LIMIT="2 per minute").test_client()
    name, _ = _register(first)
    assert _login(first, name, "bad-password", "192.0.2.10").status_code == 401
    assert _login(second, name, "bad-password", "192.0.2.11").status_code == 401
    assert _login(first, name, "long-enough-pw", "192.0.2.12").status_code == 429


def test_tokens_expire(make_app):
    client = make_app(TOKEN_MAX_AGE=1).test_client()
    _, token = _register(client)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    time.sleep(2.1)
    expired = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401


def test_tokens_signed_with_another_key_are_rejected(make_app):
    app = make_app()
    client = app.test_client()
    _register(client)
    forged = URLSafeTimedSerializer("not-the-secret", salt="synspirit-auth").dumps({"uid": 1})
    assert client.get("/api/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_writes_need_a_token(make_app):
    client = make_app().test_client()
    for method, path in [("POST", "/api/posts"), ("POST", "/api/articles"),
                         ("POST", "/api/actions"), ("DELETE", "/api/actions"),
                         ("PATCH", "/api/posts/1"), ("DELETE", "/api/articles/1"),
                         ("POST", "/api/posts/1/comments"),
                         ("DELETE", "/api/articles/1/comments/1")]:
        resp = client.open(path, method=method, json={})
        assert resp.status_code == 401, (method, path)


def test_production_refuses_to_start_without_a_secret_key(stack_env, monkeypatch):
    from app.config import ConfigError, load_config
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("SYNSPIRIT_ENV", "production")
    with pytest.raises(ConfigError):
        load_config()


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _writes(client, token, item_id):
    """One of each kind of write, round and round."""
    while True:
        yield client.post("/api/posts", headers=_auth(token), json={"title": "t", "content": "c"})
        yield client.post(f"/api/posts/{item_id}/comments", headers=_auth(token),
                          json={"content": "c"})
        yield client.post("/api/actions", headers=_auth(token),
                          json={"action": "like", "target_type": "post", "target_id": item_id})
        yield client.delete("/api/actions", headers=_auth(token),
                            json={"action": "like", "target_type": "post", "target_id": item_id})
        yield client.patch(f"/api/posts/{item_id}", headers=_auth(token), json={"title": "t2"})


def test_writes_per_user_are_limited_across_kinds_and_instances(make_app):
    """WRITE_RATE_LIMIT is one budget per user for posts, comments, actions and edits, shared by
    every instance; a 429 says when to come back; other users write on."""
    config = dict(WRITE_RATE_LIMIT="6 per minute")
    first, second = make_app(**config).test_client(), make_app(**config).test_client()
    _, token = _register(first)
    _, bystander = _register(first)
    item_id = first.post("/api/posts", headers=_auth(token),
                         json={"title": "t", "content": "c"}).get_json()["id"]
    writes = _writes(first, token, item_id)
    statuses = [next(writes).status_code for _ in range(5)]
    assert all(s in (200, 201) for s in statuses), statuses
    other_writes = _writes(second, token, item_id)
    blocked = [next(other_writes) for _ in range(5)]
    assert [r.status_code for r in blocked] == [429] * 5
    assert 0 < int(blocked[0].headers["Retry-After"]) <= 60
    assert blocked[0].get_json()["error"]["code"] == "rate_limited"
    assert second.post("/api/posts", headers=_auth(bystander),
                       json={"title": "t", "content": "c"}).status_code == 201
    # Reads are not writes.
    assert second.get(f"/api/posts/{item_id}").status_code == 200


def test_a_script_writing_in_a_loop_meets_the_default_write_limit(make_app, monkeypatch):
    """With the defaults, a user writing as fast as possible is stopped within 100 writes."""
    monkeypatch.delenv("WRITE_RATE_LIMIT", raising=False)
    client = make_app().test_client()
    _, token = _register(client)
    item_id = client.post("/api/posts", headers=_auth(token),
                          json={"title": "t", "content": "c"}).get_json()["id"]
    codes = [client.open("/api/actions", method="POST" if i % 2 else "DELETE",
                         headers=_auth(token),
                         json={"action": "like", "target_type": "post", "target_id": item_id}
                         ).status_code for i in range(99)]
    assert 429 in codes
    assert codes.index(429) >= 30  # a person's burst passes


def test_registrations_per_client_address_are_limited(make_app):
    """REGISTER_RATE_LIMIT new accounts per address, shared by instances; other addresses go on."""
    config = dict(TRUSTED_PROXY_COUNT=1, REGISTER_RATE_LIMIT="2 per minute")
    first, second = make_app(**config).test_client(), make_app(**config).test_client()
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"

    def register(client, address):
        return client.post("/api/auth/register", headers={"X-Forwarded-For": address},
                           json={"username": f"r{uuid.uuid4().hex[:12]}",
                                 "password": "long-enough-pw"})

    assert [register(first, ip).status_code, register(second, ip).status_code] == [201, 201]
    blocked = register(first, ip)
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 60
    assert register(second, "192.0.2.99").status_code == 201


def test_a_script_registering_in_a_loop_meets_the_default_limit(make_app, monkeypatch):
    monkeypatch.delenv("REGISTER_RATE_LIMIT", raising=False)
    client = make_app(TRUSTED_PROXY_COUNT=1, ARGON2_TIME_COST=1, ARGON2_MEMORY_COST=1024,
                      ARGON2_PARALLELISM=1).test_client()
    ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    codes = [client.post("/api/auth/register", headers={"X-Forwarded-For": ip},
                         json={"username": f"r{uuid.uuid4().hex[:12]}",
                               "password": "long-enough-pw"}).status_code for _ in range(50)]
    assert 429 in codes
    assert codes.index(429) >= 5  # a family behind one address gets its accounts
