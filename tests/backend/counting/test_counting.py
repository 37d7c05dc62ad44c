"""Counts kept by real Celery workers (gevent io pool, prefork cpu pool) behind a real gunicorn:
the relations are the truth and every count converges to it within 2 seconds."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from testkit.apiclient import API
from testkit.waiting import wait_until

pytestmark = pytest.mark.usefixtures("celery_workers", "beat")

CONVERGENCE = 2.0  # seconds: the promise after a burst stops


def db_counts(db, table: str, item_id: int) -> dict:
    row = db.execute(text(
        f"SELECT views_count, likes_count, collects_count, shares_count, comments_count "
        f"FROM {table} WHERE id = :id"), {"id": item_id}).one()
    return dict(zip(("views", "likes", "collects", "shares", "comments"), row, strict=True))


def truth(db, kind: str, item_id: int) -> dict:
    """The counts recomputed here from the rows, independently of the application."""
    out = {}
    for action in ("like", "collect", "share"):
        out[f"{action}s"] = db.execute(text(
            f"SELECT count(*) FROM reactions WHERE {kind}_id = :id AND action = :a"),
            {"id": item_id, "a": action}).scalar()
    out["comments"] = db.execute(text(
        f"SELECT count(*) FROM {kind}_comments WHERE {kind}_id = :id"), {"id": item_id}).scalar()
    return out


def converged(db, kind, item_id, **expected):
    def probe():
        db.rollback()  # see other transactions' commits
        got = db_counts(db, f"{kind}s", item_id)
        return all(got[k] == v for k, v in expected.items()) and got
    return wait_until(probe, timeout=CONVERGENCE)


@pytest.mark.parametrize("kind", ["post", "article"])
def test_likes_collects_shares_and_comments_are_counted_by_the_worker(api, db, kind):
    """Two users like, collect, share and comment; the counts follow, and undoing a like or a
    collect brings them back down."""
    _, author = api.register()
    _, alice = api.register()
    _, bob = api.register()
    item = api.create(kind, author)
    for token in (alice, bob):
        for action in ("like", "collect", "share"):
            resp = api.act(token, action, kind, item["id"])
            assert resp.status_code == 200
            assert resp.json() == {"action": action, "target_type": kind,
                                   "target_id": item["id"], "active": True}
    assert api.post(f"/api/{kind}s/{item['id']}/comments", token=alice,
                    json={"content": "first!"}).status_code == 201
    assert converged(db, kind, item["id"], likes=2, collects=2, shares=2, comments=1)

    assert api.act(alice, "like", kind, item["id"], undo=True).json()["active"] is False
    assert api.act(bob, "collect", kind, item["id"], undo=True).status_code == 200
    assert converged(db, kind, item["id"], likes=1, collects=1, shares=2, comments=1)
    assert api.counts(kind, item["id"]) | {"views": 0} == {
        "views": 0, "likes": 1, "collects": 1, "shares": 2, "comments": 1}


@pytest.mark.parametrize("kind", ["post", "article"])
def test_comment_likes_are_counted(api, db, kind):
    """A comment's like count follows its likes, on posts and articles alike."""
    _, author = api.register()
    _, fan = api.register()
    item = api.create(kind, author)
    comment = api.post(f"/api/{kind}s/{item['id']}/comments", token=author,
                       json={"content": "a comment"}).json()
    for token in (author, fan):
        assert api.act(token, "like", f"{kind}_comment", comment["id"]).status_code == 200

    def likes():
        page = api.get(f"/api/{kind}s/{item['id']}/comments").json()
        return page["items"][0]["counts"]["likes"] == 2
    assert wait_until(likes, timeout=CONVERGENCE)
    api.act(fan, "like", f"{kind}_comment", comment["id"], undo=True)
    assert wait_until(lambda: api.get(f"/api/{kind}s/{item['id']}/comments")
                      .json()["items"][0]["counts"]["likes"] == 1, timeout=CONVERGENCE)


def test_deleting_a_comment_lowers_the_comment_count(api, db):
    """Deleting a comment is counted like adding one."""
    _, author = api.register()
    post = api.create("post", author)
    ids = [api.post(f"/api/posts/{post['id']}/comments", token=author,
                    json={"content": f"c{i}"}).json()["id"] for i in range(3)]
    assert converged(db, "post", post["id"], comments=3)
    assert api.delete(f"/api/posts/{post['id']}/comments/{ids[1]}", token=author).status_code == 204
    assert converged(db, "post", post["id"], comments=2)


def test_fifty_users_liking_at_once_give_fifty_likes(api, db):
    """50 users like one post at the same moment over real HTTP: likes == 50."""
    _, author = api.register()
    post = api.create("post", author)
    tokens = [api.register("fan")[1] for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(lambda t: API(api.base_url).act(t, "like", "post", post["id"])
                              .status_code, tokens))
    assert codes == [200] * 50
    assert converged(db, "post", post["id"], likes=50)
    assert truth(db, "post", post["id"])["likes"] == 50


def test_one_user_liking_twenty_times_at_once_counts_once(api, db):
    """One user sends 20 likes of one post at once: one like, every answer says active."""
    _, author = api.register()
    _, fan = api.register()
    post = api.create("post", author)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: API(api.base_url).act(fan, "like", "post", post["id"])
                                .json(), range(20)))
    assert all(a["active"] is True for a in answers)
    assert converged(db, "post", post["id"], likes=1)
    assert db.execute(text("SELECT count(*) FROM reactions WHERE post_id = :id"),
                      {"id": post["id"]}).scalar() == 1


@pytest.mark.parametrize("kind", ["post", "article"])
def test_a_thousand_views_from_twenty_clients_are_counted_exactly(api, db, kind):
    """1,000 views from 20 concurrent clients: views == 1,000 in PostgreSQL within 2 s of the
    last one, written in a handful of batches (not one write per view)."""
    _, author = api.register()
    item = api.create(kind, author)
    db.rollback()
    batches_before = db.execute(text("SELECT count(*) FROM view_batches")).scalar()

    def view_fifty(_):
        client = API(api.base_url)
        return [client.get(f"/api/{kind}s/{item['id']}").status_code for _ in range(50)]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = [c for chunk in pool.map(view_fifty, range(20)) for c in chunk]
    elapsed = time.monotonic() - started
    assert codes == [200] * 1000
    assert converged(db, kind, item["id"], views=1000)
    time.sleep(1.5)  # a late or repeated flush must not count anything twice
    db.rollback()
    assert db_counts(db, f"{kind}s", item["id"])["views"] == 1000
    batches = db.execute(text("SELECT count(*) FROM view_batches")).scalar() - batches_before
    # At most a few batches a second for the whole burst, far from one write per view.
    assert batches <= 4 * (elapsed + 3), batches


def test_counts_stay_exact_under_a_mixed_burst(api, db):
    """Likes, unlikes, collects and comments from 20 users at once end equal to the rows."""
    _, author = api.register()
    post = api.create("post", author)
    users = [api.register("mix")[1] for _ in range(20)]

    def churn(i_token):
        i, token = i_token
        client = API(api.base_url)
        client.act(token, "like", "post", post["id"])
        client.act(token, "collect", "post", post["id"])
        if i % 2:
            client.act(token, "like", "post", post["id"], undo=True)
        if i % 3 == 0:
            client.post(f"/api/posts/{post['id']}/comments", token=token, json={"content": "x"})
        client.get(f"/api/posts/{post['id']}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(churn, enumerate(users)))
    expected = {"likes": 10, "collects": 20, "shares": 0, "comments": 7}
    assert truth(db, "post", post["id"]) == expected
    assert converged(db, "post", post["id"], views=20, **expected)


def test_twenty_slow_queries_share_one_gevent_worker(api, db):
    """20 concurrent requests that each wait 0.2 s inside PostgreSQL finish together in well
    under 2 s on the single gevent worker: the database driver is cooperative."""
    _, author = api.register()
    posts = [api.create("post", author) for _ in range(20)]
    # A trigger that makes exactly these updates wait 0.2 s in PostgreSQL.
    db.execute(text("""
        CREATE OR REPLACE FUNCTION slow_probe() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$"""))
    db.execute(text("DROP TRIGGER IF EXISTS slow_probe ON posts"))
    db.execute(text("""CREATE TRIGGER slow_probe BEFORE UPDATE ON posts FOR EACH ROW
                       WHEN (NEW.title LIKE 'slow-probe%') EXECUTE FUNCTION slow_probe()"""))
    db.commit()
    try:
        def patch(post, title):
            return API(api.base_url).patch(f"/api/posts/{post['id']}", token=author,
                                           json={"title": title}).status_code

        def slow_patch(post):
            return patch(post, f"slow-probe {post['id']}")
        # Warm-up: open the pool's PostgreSQL connections first, so only the waits are timed.
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda p: patch(p, "warm-up"), posts))
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = list(pool.map(slow_patch, posts))
        elapsed = time.monotonic() - started
    finally:
        db.execute(text("DROP TRIGGER IF EXISTS slow_probe ON posts"))
        db.commit()
    assert codes == [200] * 20
    # Serially (a blocking driver) the waits alone take 20 x 0.2 = 4 s however fast the machine;
    # overlapped they take ~0.2 s plus the requests' own work, which a loaded 2-core machine
    # stretches to 1-2 s (seen in CI): 3 s still tells the two apart.
    assert elapsed < 3.0, f"20 x 0.2 s took {elapsed:.2f} s: the driver blocks the event loop"


def _send(stack_env, task_name: str, queue: str) -> None:
    """Enqueue a task by name, as beat would, through the real broker."""
    from celery import Celery

    client = Celery("synspirit-test", broker=stack_env["REDIS_URL"])
    try:
        client.send_task(task_name, queue=queue)
    finally:
        client.close()


def test_the_sweep_repairs_counts_whose_task_was_never_enqueued(api, db, stack_env):
    """A like stored while the broker was away (no count task) is counted by the periodic
    reconcile_counts sweep, run here by the real io worker."""
    author_user, author = api.register()
    fan_user, _ = api.register()
    post = api.create("post", author)
    comment = api.post(f"/api/posts/{post['id']}/comments", token=author,
                       json={"content": "c"}).json()
    assert converged(db, "post", post["id"], comments=1)
    db.execute(text("INSERT INTO reactions (user_id, action, post_id) VALUES (:u, 'like', :p)"),
               {"u": fan_user["id"], "p": post["id"]})
    db.execute(text("INSERT INTO reactions (user_id, action, post_comment_id) "
                    "VALUES (:u, 'like', :c)"), {"u": fan_user["id"], "c": comment["id"]})
    db.commit()
    _send(stack_env, "app.tasks.reconcile_counts", "io")
    assert converged(db, "post", post["id"], likes=1, comments=1)

    def comment_likes():
        db.rollback()
        return db.execute(text("SELECT likes_count FROM post_comments WHERE id = :id"),
                          {"id": comment["id"]}).scalar() == 1
    assert wait_until(comment_likes, timeout=CONVERGENCE)


def test_the_sweep_renders_articles_whose_render_was_never_enqueued(api, db, stack_env):
    """An article left unrendered (its render task lost) is rendered by the cpu sweep."""
    _, author = api.register()
    article = api.create("article", author, content="*swept*")
    assert wait_until(lambda: api.get(f"/api/articles/{article['id']}").json()["content_html"],
                      timeout=10)
    db.execute(text("UPDATE articles SET content_html = NULL, excerpt = NULL, "
                    "updated_at = now() - interval '1 minute' WHERE id = :id"),
               {"id": article["id"]})
    db.commit()
    _send(stack_env, "app.tasks.render_pending_articles", "cpu")

    def rendered():
        db.rollback()
        return db.execute(text("SELECT content_html FROM articles WHERE id = :id"),
                          {"id": article["id"]}).scalar()
    assert "<em>swept</em>" in (wait_until(rendered, timeout=10) or "")
