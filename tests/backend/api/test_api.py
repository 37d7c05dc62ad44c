"""The HTTP API over a real gunicorn and PostgreSQL: shapes, permissions, pagination."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from testkit.waiting import wait_until

KINDS = ["post", "article"]


def test_register_login_and_me(api):
    """A registered user logs in and reads their own profile with the token."""
    resp = api.post("/api/auth/register", json={"username": "Ada_Lovelace1", "password": "s3cret-pw"})
    if resp.status_code == 409:  # a rerun against the same database
        pytest.skip("name taken by an earlier run")
    assert resp.status_code == 201
    body = resp.json()
    assert body["user"]["username"] == "Ada_Lovelace1" and body["token"]
    login = api.post("/api/auth/login", json={"username": "Ada_Lovelace1", "password": "s3cret-pw"})
    assert login.status_code == 200
    me = api.get("/api/me", token=login.json()["token"])
    assert me.status_code == 200
    assert set(me.json()) == {"id", "username", "created_at", "role"}
    assert me.json()["role"] == "user"
    assert me.json()["id"] == body["user"]["id"]


def test_taken_usernames_get_409(api):
    user, _ = api.register()
    resp = api.post("/api/auth/register", json={"username": user["username"], "password": "another-pw"})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "username_taken"


def test_wrong_password_and_unknown_user_get_the_same_401(api):
    user, _ = api.register()
    wrong = api.post("/api/auth/login", json={"username": user["username"], "password": "nope-nope"})
    unknown = api.post("/api/auth/login", json={"username": "nobody_xyz", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_passwords_are_stored_as_argon2id_with_explicit_parameters(api, db):
    user, _ = api.register()
    stored = db.execute(text("SELECT password_hash FROM users WHERE id = :id"),
                        {"id": user["id"]}).scalar()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "correct-horse" not in stored


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer garbage", "Basic dXNlcjpwdw==",
                                    "Bearer eyJ1aWQiOjF9.forged.signature"])
def test_me_without_a_valid_token_is_401(api, header):
    headers = {"Authorization": header} if header else {}
    resp = api.get("/api/me", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("kind", KINDS)
def test_content_lifecycle(api, kind):
    """Create, read, list, edit and delete a post or an article, with the documented shape."""
    author, token = api.register()
    created = api.create(kind, token, title="How gevent works", content="Greenlets **all** the way")
    assert created["author"] == {"id": author["id"], "username": author["username"]}
    assert created["counts"] == {"views": 0, "likes": 0, "collects": 0, "shares": 0, "comments": 0}
    expected_keys = {"id", "title", "content", "author", "created_at", "updated_at", "counts"}
    if kind == "article":
        expected_keys |= {"content_html", "excerpt", "reading_minutes"}
    assert set(created) == expected_keys

    shown = api.get(f"/api/{kind}s/{created['id']}")
    assert shown.status_code == 200 and shown.json()["title"] == "How gevent works"

    edited = api.patch(f"/api/{kind}s/{created['id']}", token=token, json={"title": "Renamed"})
    assert edited.status_code == 200
    assert edited.json()["title"] == "Renamed" and edited.json()["content"] == created["content"]

    assert api.delete(f"/api/{kind}s/{created['id']}", token=token).status_code == 204
    assert api.get(f"/api/{kind}s/{created['id']}").status_code == 404


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_author_may_edit_or_delete(api, kind):
    _, owner = api.register()
    _, other = api.register()
    item = api.create(kind, owner)
    patch = api.patch(f"/api/{kind}s/{item['id']}", token=other, json={"title": "mine now"})
    delete = api.delete(f"/api/{kind}s/{item['id']}", token=other)
    assert patch.status_code == delete.status_code == 403
    assert patch.json()["error"]["code"] == "forbidden"
    assert api.get(f"/api/{kind}s/{item['id']}").json()["title"] == item["title"]


@pytest.mark.parametrize("kind", KINDS)
def test_lists_page_newest_first(api, kind):
    _, token = api.register()
    ids = [api.create(kind, token, title=f"item {i}")["id"] for i in range(3)]
    page = api.get(f"/api/{kind}s?page=1&per_page=2").json()
    assert page["page"] == 1 and page["per_page"] == 2 and page["total"] >= 3
    assert [i["id"] for i in page["items"]] == ids[::-1][:2]
    second = api.get(f"/api/{kind}s?page=2&per_page=2").json()
    assert second["items"][0]["id"] == ids[0]
    assert api.get(f"/api/{kind}s?sort=hot&per_page=100").status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_comments_page_oldest_first_and_only_their_author_deletes(api, kind):
    _, author = api.register()
    _, other = api.register()
    item = api.create(kind, author)
    first = api.post(f"/api/{kind}s/{item['id']}/comments", token=other, json={"content": "one"})
    second = api.post(f"/api/{kind}s/{item['id']}/comments", token=author, json={"content": "two"})
    assert first.status_code == second.status_code == 201
    assert set(first.json()) == {"id", "content", "author", "created_at", "counts"}
    page = api.get(f"/api/{kind}s/{item['id']}/comments?per_page=10").json()
    assert [c["content"] for c in page["items"]] == ["one", "two"] and page["total"] == 2
    cid = first.json()["id"]
    assert api.delete(f"/api/{kind}s/{item['id']}/comments/{cid}", token=author).status_code == 403
    assert api.delete(f"/api/{kind}s/{item['id']}/comments/{cid}", token=other).status_code == 204
    assert api.get(f"/api/{kind}s/{item['id']}/comments").json()["total"] == 1


def test_deleting_content_leaves_no_orphan_rows(api, db):
    """A deleted post takes its comments and every like, collect and share with it."""
    _, author = api.register()
    _, fan = api.register()
    post = api.create("post", author)
    comment = api.post(f"/api/posts/{post['id']}/comments", token=fan, json={"content": "x"}).json()
    api.act(fan, "like", "post", post["id"])
    api.act(fan, "share", "post", post["id"])
    api.act(author, "like", "post_comment", comment["id"])
    assert api.delete(f"/api/posts/{post['id']}", token=author).status_code == 204
    left = db.execute(text(
        "SELECT (SELECT count(*) FROM post_comments WHERE post_id = :p)"
        " + (SELECT count(*) FROM reactions WHERE post_id = :p OR post_comment_id = :c)"),
        {"p": post["id"], "c": comment["id"]}).scalar()
    assert left == 0


def test_shares_cannot_be_undone_and_comments_take_likes_only(api):
    _, author = api.register()
    post = api.create("post", author)
    comment = api.post(f"/api/posts/{post['id']}/comments", token=author,
                       json={"content": "x"}).json()
    assert api.act(author, "share", "post", post["id"]).status_code == 200
    undo = api.act(author, "share", "post", post["id"], undo=True)
    assert undo.status_code == 400 and undo.json()["error"]["code"] == "irreversible_action"
    collect = api.act(author, "collect", "post_comment", comment["id"])
    assert collect.status_code == 400 and collect.json()["error"]["code"] == "unsupported_action"


def test_undoing_what_was_never_done_is_not_an_error(api):
    _, author = api.register()
    post = api.create("post", author)
    resp = api.act(author, "collect", "post", post["id"], undo=True)
    assert resp.status_code == 200 and resp.json()["active"] is False


@pytest.mark.usefixtures("celery_workers")
def test_articles_are_rendered_to_sanitized_html_by_the_cpu_worker(api):
    """An article's Markdown becomes sanitized HTML, an excerpt and a reading time, on the cpu
    queue; an edit clears and re-renders it."""
    _, token = api.register()
    article = api.create("article", token, content="# Title\n\n**bold** <script>x()</script>\n\n"
                         "[link](javascript:alert(1))")
    assert article["content_html"] is None

    def rendered():
        body = api.get(f"/api/articles/{article['id']}").json()
        return body if body["content_html"] else None
    body = wait_until(rendered, timeout=10)
    assert body, "the cpu worker did not render the article"
    assert "<h1>Title</h1>" in body["content_html"] and "<strong>bold</strong>" in body["content_html"]
    assert "<script>" not in body["content_html"]
    assert 'href="javascript' not in body["content_html"]
    assert body["excerpt"].startswith("Title bold") and body["reading_minutes"] == 1
    assert "&lt;script&gt;x()&lt;/script&gt;" in body["excerpt"]  # text, escaped

    edited = api.patch(f"/api/articles/{article['id']}", token=token,
                       json={"content": "A *new* body"}).json()
    assert edited["content_html"] is None
    again = wait_until(lambda: (r := rendered()) and "<em>new</em>" in r["content_html"] and r,
                       timeout=10)
    assert again and again["excerpt"] == "A new body"


def test_operations_endpoints(api):
    assert api.get("/healthz").status_code == 200
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}
    api.get("/api/posts")
    metrics = api.get("/metrics").text
    assert 'synspirit_http_requests_total{endpoint="/api/posts",method="GET",status="200"}' in metrics
    assert "synspirit_http_request_duration_seconds_bucket" in metrics
    assert "synspirit_socketio_connections" in metrics


def test_invented_http_methods_do_not_grow_the_metrics(api):
    """Each invented method would be a new series on /metrics (2,000 made it 3.3 MB): they are
    all counted under one method label, "other"."""
    invented = [f"X{i:04d}ZZ" for i in range(200)]
    for method in invented:
        assert api.call(method, "/api/posts").status_code == 405
    before = len(api.get("/metrics").text)
    for method in (f"Y{i:04d}ZZ" for i in range(200)):
        api.call(method, "/api/posts")
    metrics = api.get("/metrics").text
    assert not any(method in metrics for method in invented)
    assert 'method="other",status="405"}' in metrics
    assert len(metrics) - before < 2000  # the counts grew, not the series
