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
