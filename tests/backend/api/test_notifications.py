"""Stored notifications over the real gunicorn, PostgreSQL, Redis and Celery: written with their
cause (likes, collects, shares at most once per actor and target; comments with the comment's
id), listed newest first by cursor (own only), marked read, pruned by the real io worker."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from testkit.waiting import wait_until

KINDS = ["post", "article"]
ITEM_KEYS = {"id", "type", "actor", "target_type", "target_id", "comment_id", "read",
             "created_at"}


def _listed(api, token, **params) -> dict:
    resp = api.get("/api/notifications", token=token, params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"items", "unread_count", "next_before"}
    for item in body["items"]:
        assert set(item) == ITEM_KEYS, item
    return body


def _all(api, token) -> list[dict]:
    return _listed(api, token, limit=100)["items"]


def _read(api, token, body):
    return api.post("/api/notifications/read", token=token, json=body)


def test_a_like_notifies_the_author_once_however_often_it_is_undone_and_redone(api):
    author_user, author = api.register()
    fan_user, fan = api.register()
    post = api.create("post", author)
    assert api.act(fan, "like", "post", post["id"]).status_code == 200
    [item] = _all(api, author)
    assert item["type"] == "like" and item["read"] is False and item["comment_id"] is None
    assert item["actor"] == {"id": fan_user["id"], "username": fan_user["username"]}
    assert (item["target_type"], item["target_id"]) == ("post", post["id"])
    for _ in range(3):
        assert api.act(fan, "like", "post", post["id"], undo=True).status_code == 200
        assert api.act(fan, "like", "post", post["id"]).status_code == 200
    assert api.act(fan, "like", "post", post["id"]).status_code == 200  # a repeated POST
    assert [i["id"] for i in _all(api, author)] == [item["id"]]
    # Another action, or another actor, is news: one more each.
    assert api.act(fan, "collect", "post", post["id"]).status_code == 200
    assert api.act(fan, "share", "post", post["id"]).status_code == 200
    _, other = api.register()
    assert api.act(other, "like", "post", post["id"]).status_code == 200
    got = _all(api, author)
    assert [i["type"] for i in got] == ["like", "share", "collect", "like"]
    assert len({(i["type"], i["actor"]["id"]) for i in got}) == 4
    assert author_user["id"] not in {i["actor"]["id"] for i in got}


def test_a_comment_like_names_the_comment_as_the_target(api):
    _, author = api.register()
    fan_user, fan = api.register()
    article = api.create("article", author)
    comment = api.post(f"/api/articles/{article['id']}/comments", token=author,
                       json={"content": "mine"}).json()
    assert api.act(fan, "like", "article_comment", comment["id"]).status_code == 200
    [item] = _all(api, author)
    assert (item["type"], item["target_type"], item["target_id"]) == (
        "like", "article_comment", comment["id"])
    assert item["actor"]["id"] == fan_user["id"]


def test_own_actions_notify_nobody(api, db):
    author_user, author = api.register()
    post = api.create("post", author)
    comment = api.post(f"/api/posts/{post['id']}/comments", token=author,
                       json={"content": "me"}).json()
    for action in ("like", "collect", "share"):
        assert api.act(author, action, "post", post["id"]).status_code == 200
    assert api.act(author, "like", "post_comment", comment["id"]).status_code == 200
    body = _listed(api, author)
    assert body == {"items": [], "unread_count": 0, "next_before": None}
    assert db.execute(text("SELECT count(*) FROM notifications WHERE user_id = :u OR "
                           "actor_id = :u"), {"u": author_user["id"]}).scalar() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_comment_notifies_the_author_with_the_comments_id(api, kind):
    _, author = api.register()
    fan_user, fan = api.register()
    item = api.create(kind, author)
    created = api.post(f"/api/{kind}s/{item['id']}/comments", token=fan,
                       json={"content": "well said"})
    assert created.status_code == 201
    [got] = _all(api, author)
    assert got["type"] == "comment" and got["comment_id"] == created.json()["id"]
    assert (got["target_type"], got["target_id"]) == (kind, item["id"])
    assert got["actor"] == {"id": fan_user["id"], "username": fan_user["username"]}
    # Each comment is news: a second one is a second notification.
    api.post(f"/api/{kind}s/{item['id']}/comments", token=fan, json={"content": "again"})
    assert [n["type"] for n in _all(api, author)] == ["comment", "comment"]


def test_the_list_pages_newest_first_by_cursor(api, db):
    author_user, author = api.register()
    _, fan = api.register()
    posts = [api.create("post", author) for _ in range(5)]
    for post in posts:
        assert api.act(fan, "like", "post", post["id"]).status_code == 200
    stored = db.execute(text("SELECT id FROM notifications WHERE user_id = :u ORDER BY id DESC"),
                        {"u": author_user["id"]}).scalars().all()
    assert len(stored) == 5
    first = _listed(api, author, limit=2)
    assert [i["id"] for i in first["items"]] == stored[:2]
    assert [i["target_id"] for i in first["items"]] == [posts[4]["id"], posts[3]["id"]]
    assert first["next_before"] == stored[1] and first["unread_count"] == 5
    second = _listed(api, author, limit=2, before=first["next_before"])
    assert [i["id"] for i in second["items"]] == stored[2:4]
    last = _listed(api, author, limit=2, before=second["next_before"])
    assert [i["id"] for i in last["items"]] == stored[4:] and last["next_before"] is None
    # A page that is exactly full says so only when more follow.
    assert _listed(api, author, limit=5)["next_before"] is None
    assert _listed(api, author, limit=4)["next_before"] == stored[3]
    assert [i["id"] for i in _listed(api, author)["items"]] == stored  # default limit 20
    assert _listed(api, author, before=stored[-1])["items"] == []


def test_nobody_sees_or_marks_anothers_notifications(api):
    _, author = api.register()
    _, fan = api.register()
    _, bystander = api.register()
    post = api.create("post", author)
    api.act(fan, "like", "post", post["id"])
    [mine] = _all(api, author)
    assert _listed(api, bystander) == {"items": [], "unread_count": 0, "next_before": None}
    assert _listed(api, bystander, before=mine["id"] + 1)["items"] == []
    # The fan (the actor) does not get it either.
    assert mine["id"] not in {i["id"] for i in _all(api, fan)}
    for body in ({}, {"up_to": mine["id"]}):
        assert _read(api, bystander, body).status_code == 204
    assert _listed(api, author)["unread_count"] == 1 and _all(api, author)[0]["read"] is False


def test_unread_count_and_marking_read_up_to_an_id_or_all(api):
    _, author = api.register()
    fans = [api.register()[1] for _ in range(4)]
    post = api.create("post", author)
    for fan in fans:
        api.act(fan, "like", "post", post["id"])
    body = _listed(api, author)
    ids = [i["id"] for i in body["items"]]  # newest first
    assert body["unread_count"] == 4 and not any(i["read"] for i in body["items"])
    assert _read(api, author, {"up_to": ids[2]}).status_code == 204
    body = _listed(api, author)
    assert body["unread_count"] == 2
    assert [i["read"] for i in body["items"]] == [False, False, True, True]
    # Again, or below what is read already: nothing changes.
    assert _read(api, author, {"up_to": ids[3]}).status_code == 204
    assert _listed(api, author)["unread_count"] == 2
    assert _read(api, author, {"up_to": None}).status_code == 204  # null: all, as {}
    body = _listed(api, author)
    assert body["unread_count"] == 0 and all(i["read"] for i in body["items"])
    # New ones arrive unread; {} marks all.
    _, late = api.register()
    api.act(late, "collect", "post", post["id"])
    assert _listed(api, author)["unread_count"] == 1
    assert _read(api, author, {}).status_code == 204
    assert _listed(api, author)["unread_count"] == 0


@pytest.mark.parametrize("token", [None, "garbage"])
def test_both_routes_need_a_token(api, token):
    for resp in (api.get("/api/notifications", token=token),
                 api.post("/api/notifications/read", token=token, json={})):
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("query, field", [
    ("before=0", "before"), ("before=-1", "before"), ("before=abc", "before"),
    ("before=2147483648", "before"), ("before=", "before"), ("before=%202", "before"),
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=1.5", "limit"), ("limit=%2B2", "limit"),
    ("limit=1_0", "limit"), ("limit=x", "limit"), ("page=2", "page"), ("per_page=5", "per_page"),
    ("limit=5&unread=1", "unread"),
])
def test_bad_query_parameters_are_422(api, register_user, query, field):
    _, token = register_user()
    resp = api.get(f"/api/notifications?{query}", token=token)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"], error


@pytest.mark.parametrize("body, status", [
    ({"up_to": "5"}, 422), ({"up_to": 0}, 422), ({"up_to": -5}, 422), ({"up_to": 1.5}, 422),
    ({"up_to": True}, 422), ({"up_to": 2**31}, 422), ({"up_to": [1]}, 422),
    ([], 400), ("all", 400),
])
def test_bad_read_bodies_are_refused_and_change_nothing(api, body, status):
    _, author = api.register()
    _, fan = api.register()
    post = api.create("post", author)
    api.act(fan, "like", "post", post["id"])
    resp = _read(api, author, body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    if status == 422:
        assert error["code"] == "validation_error" and "up_to" in error["fields"], error
    assert _listed(api, author)["unread_count"] == 1


def test_a_read_body_that_is_not_json_is_400(api):
    _, token = api.register()
    resp = api.post("/api/notifications/read", token=token, data="up_to=5",
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"


def test_a_deleted_actor_takes_their_notifications_along(api, db):
    """ON DELETE CASCADE both ways: no notification outlives its actor's or recipient's account
    (accounts are deleted by operators, in SQL)."""
    author_user, author = api.register()
    fan_user, fan = api.register()
    post = api.create("post", author)
    api.act(fan, "like", "post", post["id"])
    # Undone first: the cascade then takes no reaction along (counts would lag until the sweep).
    api.act(fan, "like", "post", post["id"], undo=True)
    assert _listed(api, author)["unread_count"] == 1
    db.execute(text("DELETE FROM users WHERE id = :id"), {"id": fan_user["id"]})
    db.commit()
    assert _listed(api, author) == {"items": [], "unread_count": 0, "next_before": None}


# --- pruning, on the real io worker ----------------------------------------------------------------

@pytest.mark.usefixtures("celery_workers")
def test_pruning_on_the_io_worker_deletes_old_read_notifications_only(api, db, stack_env):
    """prune_notifications, sent to the io queue as beat sends it and run by the real io worker:
    read notifications older than NOTIFICATION_RETENTION_DAYS (30 by default) go; unread ones,
    however old, and recent read ones stay."""
    from celery import Celery

    author_user, author = api.register()
    fans = [api.register()[1] for _ in range(4)]
    post = api.create("post", author)
    for fan in fans:
        api.act(fan, "like", "post", post["id"])
    old_read, old_unread, recent_read, fresh = sorted(
        i["id"] for i in _all(api, author))
    db.execute(text("UPDATE notifications SET read = true WHERE id IN (:a, :b)"),
               {"a": old_read, "b": recent_read})
    db.execute(text("UPDATE notifications SET created_at = now() - interval '31 days' "
                    "WHERE id IN (:a, :b)"), {"a": old_read, "b": old_unread})
    db.execute(text("UPDATE notifications SET created_at = now() - interval '29 days' "
                    "WHERE id = :c"), {"c": recent_read})
    db.commit()

    client = Celery("synspirit-test-prune", broker=stack_env["REDIS_URL"],
                    backend=stack_env["REDIS_URL"])
    try:
        result = client.send_task("app.tasks.prune_notifications", queue="io")
        deleted = result.get(timeout=60)
    finally:
        client.close()
    assert isinstance(deleted, int) and deleted >= 0  # beat's own run may have come first

    def left():
        db.rollback()
        return set(db.execute(text("SELECT id FROM notifications WHERE user_id = :u"),
                              {"u": author_user["id"]}).scalars())
    assert wait_until(lambda: left() == {old_unread, recent_read, fresh}, timeout=10), left()
    body = _listed(api, author)
    assert [i["id"] for i in body["items"]] == [fresh, recent_read, old_unread]
    assert body["unread_count"] == 2


def test_a_pruning_run_deletes_at_most_a_batch_and_follows_the_setting(api, db, make_app,
                                                                      monkeypatch):
    """In process, with NOTIFICATION_RETENTION_DAYS=5 and a batch of 2: read notifications 10
    days old go, two a run, the oldest first (beat's worker, at the default 30 days, leaves
    them alone)."""
    from app import tasks

    author_user, author = api.register()
    post = api.create("post", author)
    for fan in [api.register()[1] for _ in range(3)]:
        api.act(fan, "like", "post", post["id"])
    mine = {i["id"] for i in _all(api, author)}
    db.execute(text("UPDATE notifications SET read = true, "
                    "created_at = now() - interval '10 days' WHERE user_id = :u"),
               {"u": author_user["id"]})
    db.commit()
    app = make_app(NOTIFICATION_RETENTION_DAYS=5)
    monkeypatch.setattr(tasks, "PRUNE_BATCH", 2)

    def left() -> set[int]:
        db.rollback()
        return set(db.execute(text("SELECT id FROM notifications WHERE user_id = :u"),
                              {"u": author_user["id"]}).scalars())
    with app.app_context():
        assert tasks.prune_notifications.run() == 2  # others' due rows may be among them
        assert len(left()) >= 1
        runs = 1
        while left() and runs < 20:
            assert tasks.prune_notifications.run() <= 2
            runs += 1
    assert left() == set() and len(mine) == 3
