"""Reading posts without PostgreSQL (app/item_cache.py) must never serve what a user changed
away from: an edit or delete made on one web instance is seen by another instance's next read,
counts shown are the counts stored, and a missing item is loaded once however many readers
want it at the same time. Against the real gunicorn, Redis, PostgreSQL and workers."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from testkit.apiclient import API
from testkit.waiting import wait_until

pytestmark = pytest.mark.usefixtures("celery_workers", "beat")


def test_an_edit_on_one_instance_is_seen_by_the_next_read_on_another(api, app):
    """The in-process app is a second web instance with its own cache: after it has cached
    a post, the post is edited through the real gunicorn; its next read has the new text,
    and after a delete it answers 404."""
    other = app.test_client()
    _, author = api.register()
    post = api.create("post", author, title="Before", content="old text")
    path = f"/api/posts/{post['id']}"
    for _ in range(3):  # cached now
        assert other.get(path).get_json()["title"] == "Before"

    resp = api.patch(path, token=author, json={"title": "After", "content": "new text"})
    assert resp.status_code == 200
    got = other.get(path).get_json()
    assert (got["title"], got["content"]) == ("After", "new text")

    assert api.delete(path, token=author).status_code == 204
    assert other.get(path).status_code == 404
    assert api.get(path).status_code == 404


def test_an_article_render_replaces_the_cached_unrendered_article(api, app):
    """An article read before its HTML exists is cached; the render must not stay hidden."""
    other = app.test_client()
    _, author = api.register()
    article = api.create("article", author, content="# Heading\n\nSome *text*.")
    path = f"/api/articles/{article['id']}"
    other.get(path)
    assert wait_until(lambda: (other.get(path).get_json()["content_html"] or "")
                      .find("<h1") >= 0, timeout=10)


def test_counts_shown_are_the_stored_counts_after_likes_and_views(api, db, app):
    """Likes by 30 users on 10 posts at once, and views: what every read answers equals the
    rows and the views served, on the instance that took the likes and on another one."""
    other = app.test_client()
    _, author = api.register()
    posts = [api.create("post", author)["id"] for _ in range(10)]
    for pid in posts:  # cached everywhere, with their counts, before anything changes
        api.get(f"/api/posts/{pid}")
        other.get(f"/api/posts/{pid}")
    tokens = [api.register("fan")[1] for _ in range(30)]

    def like_all(token):
        client = API(api.base_url)
        return [client.act(token, "like", "post", pid).status_code for pid in posts]

    with ThreadPoolExecutor(max_workers=30) as pool:
        codes = [c for chunk in pool.map(like_all, tokens) for c in chunk]
    assert codes == [200] * 300

    def stored():
        db.rollback()  # see other transactions' commits
        return db.execute(text("SELECT count(*) FROM posts WHERE id = ANY(:ids) "
                               "AND likes_count = 30"), {"ids": posts}).scalar() == 10
    assert wait_until(stored, timeout=2.0)
    # Stored means shown: the counts in Redis are written before the count is committed.
    for pid in posts:
        assert api.get(f"/api/posts/{pid}").json()["counts"]["likes"] == 30
        assert other.get(f"/api/posts/{pid}").get_json()["counts"]["likes"] == 30
    # Views: 2 reads per post per round above, plus this one, each counted once.
    views = [api.get(f"/api/posts/{pid}").json()["counts"]["views"] for pid in posts]
    assert all(v >= 3 for v in views), views


def test_a_post_missing_from_the_cache_is_loaded_once_by_many_readers():
    """Twenty threads want the same missing item at once: one load, twenty answers."""
    from app.item_cache import ItemCache

    cache = ItemCache(maxsize=10, ttl=60)
    calls = []
    started = threading.Barrier(20)

    def loader():
        calls.append(1)
        time.sleep(0.3)
        return {"id": 1}

    def read(_):
        started.wait()
        return cache.get(("post", 1), 0) or cache.load(("post", 1), 0, loader)

    with ThreadPoolExecutor(max_workers=20) as pool:
        got = list(pool.map(read, range(20)))
    assert got == [{"id": 1}] * 20
    assert len(calls) == 1
    assert cache.get(("post", 1), 0) == {"id": 1}
    assert cache.get(("post", 1), 1) is None  # another version: reload
