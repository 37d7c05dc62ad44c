"""What a view is (VIEW_DEDUP_SECONDS, docs/contract.md): one viewer's reads of one post count
once per window, the viewer being the signed-in user, else the client address (an IPv6 client
by its /64); what is counted reaches PostgreSQL exactly. In-process against the real PostgreSQL
and Redis; the addresses are documentation ranges given as X-Forwarded-For behind one proxy."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from testkit.waiting import wait_until


def _register(client) -> str:
    resp = client.post("/api/auth/register", json={"username": f"d{uuid.uuid4().hex[:12]}",
                                                   "password": "long-enough-pw"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()["token"]


def _post(client, token) -> int:
    resp = client.post("/api/posts", json={"title": "t", "content": "c"},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()["id"]


def _read(client, pid, address, token=None) -> int:
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = client.get(f"/api/posts/{pid}", headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["counts"]["views"]


def _views_in_db(app, pid) -> int:
    from app import counting
    from app.extensions import db, redis_client

    with app.app_context():
        counting.flush_views(redis_client(), db.session)  # a worker's flush may have run first
        views = db.session.execute(text("SELECT views_count FROM posts WHERE id = :id"),
                                   {"id": pid}).scalar()
        db.session.remove()
        return views


def test_a_viewer_counts_once_per_item_in_the_window(make_app):
    app = make_app(VIEW_DEDUP_SECONDS=600, TRUSTED_PROXY_COUNT=1)
    client = app.test_client()
    alice, bob = _register(client), _register(client)
    pid = _post(client, alice)

    assert [_read(client, pid, "198.51.100.7", alice) for _ in range(5)] == [1] * 5
    assert _read(client, pid, "198.51.100.8", alice) == 1  # the same user from elsewhere
    assert _read(client, pid, "198.51.100.7", bob) == 2  # another user behind the same address
    assert [_read(client, pid, "192.0.2.10") for _ in range(4)] == [3] * 4  # anonymous: address
    assert _read(client, pid, "192.0.2.11") == 4
    # An IPv6 client is its /64: rotating addresses inside it adds nothing; the next /64 does.
    assert _read(client, pid, "2001:db8:1:2::1") == 5
    assert _read(client, pid, "2001:db8:1:2:ffff:ffff:ffff:ffff") == 5
    assert _read(client, pid, "2001:db8:1:3::1") == 6
    # Another post is another item: alice's first read of it counts.
    other = _post(client, alice)
    assert _read(client, other, "198.51.100.7", alice) == 1

    assert _views_in_db(app, pid) == 6  # exact by that definition, and what reads showed
    assert _read(client, pid, "198.51.100.7", alice) == 6


def test_a_viewer_counts_again_after_the_window(make_app):
    app = make_app(VIEW_DEDUP_SECONDS=1, TRUSTED_PROXY_COUNT=1)
    client = app.test_client()
    token = _register(client)
    pid = _post(client, token)
    assert [_read(client, pid, "198.51.100.9", token) for _ in range(3)] == [1, 1, 1]
    # Read again until the mark expires: that read counts, and only that one.
    assert wait_until(lambda: _read(client, pid, "198.51.100.9", token) == 2, timeout=5,
                      interval=0.2)
    assert _views_in_db(app, pid) == 2


def test_a_window_of_zero_counts_every_read(make_app):
    app = make_app(VIEW_DEDUP_SECONDS=0, TRUSTED_PROXY_COUNT=1)
    client = app.test_client()
    token = _register(client)
    pid = _post(client, token)
    assert [_read(client, pid, "198.51.100.9", token) for _ in range(4)] == [1, 2, 3, 4]
    assert _views_in_db(app, pid) == 4
