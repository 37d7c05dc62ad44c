"""Lists by cursor (keyset pagination, app/content/pages.py): walking a list page by page
returns every item once and in order, also while items are added; ties (hot scores, creation
times) do not lose or repeat items; a bad cursor is a 422; page numbers stay for the first
1,000 items; the total is exact for small lists and an estimate above; and the queries are
index scans (EXPLAIN of the statements the app runs).

Rows are seeded with SQL, dated 2001 (older than any other test's items, so at the bottom of
`sort=new`, and outside the ranking's 30-day window, so the every-minute ranking does not
rescore them), with negative hot scores (the ranking never gives one: at the bottom of
`sort=hot`), and deleted afterwards.
"""
from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import text

KINDS = ["post", "article"]
SEEDED_AT = "2001-01-01 00:00:00+00"


def _lists_changed(stack_env, kind: str) -> None:
    """What the app does after a write (item_cache.bump_list_version): rows written with SQL
    behind its back are otherwise listed once the first pages kept ready expire (5 s)."""
    import redis

    redis.Redis.from_url(stack_env["REDIS_URL"]).incr(f"synspirit:list-version:{kind}")


@pytest.fixture
def seed(db, api, stack_env):
    """seed(kind, n, ties=7) -> ids of n rows inserted with SQL (removed at the end):
    created_at tied in threes, hot_score tied in runs of `ties` (negative)."""
    made: list[tuple[str, list[int]]] = []
    author, _ = api.register("pg")

    def insert(kind: str, n: int, ties: int = 7) -> list[int]:
        ids = db.execute(text(f"""
            INSERT INTO {kind}s (author_id, title, content, created_at, updated_at, hot_score)
            SELECT :author, 'seeded ' || i, 'seeded body',
                   CAST(:at AS timestamptz) + (i / 3) * interval '1 second',
                   CAST(:at AS timestamptz), -1.0 - (i / :ties)
            FROM generate_series(1, :n) AS i RETURNING id"""),
            {"author": author["id"], "at": SEEDED_AT, "n": n, "ties": ties}).scalars().all()
        db.commit()
        _lists_changed(stack_env, kind)
        made.append((kind, ids))
        return ids

    yield insert
    db.rollback()
    for kind, ids in made:
        db.execute(text(f"DELETE FROM {kind}s WHERE id = ANY(:ids)"), {"ids": ids})
    db.commit()
    for kind, _ in made:
        _lists_changed(stack_env, kind)


def _walk(api, path: str, per_page: int, between=None) -> list[dict]:
    """Every item of the list at path, page by page through next_cursor."""
    sep = "&" if "?" in path else "?"
    url, items, pages = f"{path}{sep}per_page={per_page}", [], 0
    while True:
        r = api.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= per_page
        items += body["items"]
        pages += 1
        assert pages < 10_000
        if body["next_cursor"] is None:
            return items
        if between:
            between(pages)
        url = f"{path}{sep}per_page={per_page}&cursor={body['next_cursor']}"


def _order(db, kind: str, sort: str) -> list[int]:
    key = "hot_score DESC, id DESC" if sort == "hot" else "created_at DESC, id DESC"
    db.rollback()
    # as the lists show them: without the items moderators removed (other tests remove some)
    return db.execute(text(f"SELECT id FROM {kind}s WHERE removed_at IS NULL ORDER BY {key}")
                      ).scalars().all()


@pytest.mark.parametrize("kind", KINDS)
def test_walking_new_by_cursor_gives_every_item_once_in_order_while_items_are_added(
        api, db, seed, kind):
    seeded = seed(kind, 2500)
    before = _order(db, kind, "new")
    _, token = api.register()
    added = []

    def add(page: int) -> None:  # a new item above the cursor after every other page
        if page % 2:
            added.append(api.create(kind, token, title=f"during the walk {page}")["id"])

    walked = [i["id"] for i in _walk(api, f"/api/{kind}s", 97, between=add)]
    assert added
    assert len(walked) == len(set(walked)), "an item came twice"
    assert not set(added) & set(walked), "an item added above the cursor shifted the pages"
    assert walked == before  # the whole list as it was, in order: nothing lost or repeated
    assert walked[-len(seeded):] == sorted(seeded, reverse=True)  # created_at tied in threes


@pytest.mark.parametrize("kind", KINDS)
def test_walking_hot_by_cursor_is_stable_with_tied_scores(api, db, seed, kind):
    seeded = seed(kind, 1200, ties=50)  # 24 scores, 50 items each: every page boundary ties
    walked = [i["id"] for i in _walk(api, f"/api/{kind}s?sort=hot", 37)]
    mine = [i for i in walked if i in set(seeded)]
    assert len(mine) == len(set(mine)) == len(seeded)
    want = [i for i in _order(db, kind, "hot") if i in set(seeded)]
    assert mine == want  # score descending, then id descending
    assert walked[-len(seeded):] == want  # the negative scores are the bottom of the list


def _recount_comments(db, post_ids: list[int]) -> None:
    """Comments seeded with SQL: the posts' comments_count set as the API would have (the other
    suites check that every count equals its rows)."""
    db.execute(text("""
        UPDATE posts p SET comments_count = (SELECT count(*) FROM post_comments c
                                             WHERE c.post_id = p.id)
        WHERE p.id = ANY(:ids)"""), {"ids": post_ids})
    db.commit()


def test_walking_comments_by_cursor_sees_those_added_behind_the_cursor(api, db):
    _, token = api.register()
    post = api.create("post", token)
    db.execute(text("""
        INSERT INTO post_comments (post_id, author_id, content)
        SELECT :post, :author, 'seeded ' || i FROM generate_series(1, 250) AS i"""),
        {"post": post["id"], "author": post["author"]["id"]})
    _recount_comments(db, [post["id"]])
    added = []

    def add(page: int) -> None:
        if page % 10 == 0:
            r = api.post(f"/api/posts/{post['id']}/comments", token=token, json={"content": "new"})
            added.append(r.json()["id"])

    walked = [c["id"] for c in _walk(api, f"/api/posts/{post['id']}/comments", 7, between=add)]
    db.rollback()
    every = db.execute(text("SELECT id FROM post_comments WHERE post_id = :p ORDER BY id"),
                       {"p": post["id"]}).scalars().all()
    assert added and set(added) <= set(walked)  # oldest first: new ones come at the end
    assert walked == every


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("query", [
    "cursor=not*base64", "cursor=" + _cursor("garbage"), "cursor=" + _cursor("h:0x1p+0:12"),
    "sort=hot&cursor=" + _cursor("n:1000:12"), "sort=hot&cursor=" + _cursor("h:inf:12"),
    "sort=hot&cursor=" + _cursor("h:nan:12"), "sort=hot&cursor=" + _cursor("h:1.5:0"),
    "cursor=" + _cursor("n:1000:2147483648"), "cursor=" + _cursor("n:99999999999999999999:1"),
    "cursor=" + _cursor("n:1.5:1"), "cursor=" + _cursor("n:1000:-1"), "cursor=" + "A" * 201,
    "cursor=", "page=2&cursor=" + _cursor("n:1000:12"), "page=11&per_page=100", "page=1001",
    "page=51",
])
def test_a_bad_cursor_or_a_deep_page_number_is_a_422(api, query):
    r = api.get(f"/api/posts?{query}")
    assert r.status_code == 422, (query, r.text)
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) <= {"cursor", "page"} and error["fields"], error


def test_a_comment_list_refuses_a_posts_cursor(api):
    _, token = api.register()
    post = api.create("post", token)
    api.create("post", token)
    first = api.get("/api/posts?per_page=1").json()
    r = api.get(f"/api/posts/{post['id']}/comments?cursor={first['next_cursor']}")
    assert r.status_code == 422 and "cursor" in r.json()["error"]["fields"]


def test_page_numbers_and_cursors_agree_on_the_first_pages(api, seed):
    # sort=new: the hot order of recent items may change with any minute's new scores
    seed("post", 150)
    path = "/api/posts?per_page=30"
    by_page = [api.get(f"{path}&page={n}").json() for n in (1, 2, 3, 4)]  # 3, 4: past 100
    cursor, by_cursor = None, []
    for _ in range(4):
        body = api.get(path + (f"&cursor={cursor}" if cursor else "")).json()
        by_cursor.append(body)
        cursor = body["next_cursor"]
    for a, b in zip(by_page, by_cursor, strict=True):
        assert [i["id"] for i in a["items"]] == [i["id"] for i in b["items"]]
        assert a["next_cursor"] == b["next_cursor"]
        assert len(a["items"]) == 30
    assert set(by_page[0]) == {"items", "page", "per_page", "next_cursor", "total",
                               "total_exact"}


def test_the_first_page_kept_ready_shows_new_edited_and_deleted_items_at_once(api):
    _, token = api.register()
    first = api.create("post", token, title="first")
    assert api.get("/api/posts?per_page=5").json()["items"][0]["id"] == first["id"]
    second = api.create("post", token, title="second")
    assert [i["id"] for i in api.get("/api/posts?per_page=5").json()["items"][:2]] == [
        second["id"], first["id"]]
    assert api.patch(f"/api/posts/{second['id']}", token=token,
                     json={"title": "edited"}).status_code == 200
    assert api.get("/api/posts?per_page=5").json()["items"][0]["title"] == "edited"
    assert api.delete(f"/api/posts/{second['id']}", token=token).status_code == 204
    assert api.get("/api/posts?per_page=5").json()["items"][0]["id"] == first["id"]


def test_total_is_exact_for_a_short_list_and_an_estimate_beyond(api, app, seed, monkeypatch):
    _, token = api.register()
    post = api.create("post", token)
    for n in range(3):
        api.post(f"/api/posts/{post['id']}/comments", token=token, json={"content": f"c{n}"})
    body = api.get(f"/api/posts/{post['id']}/comments?per_page=1").json()
    assert body["total"] == 3 and body["total_exact"] is True
    seed("post", 30)
    from app.content import pages

    monkeypatch.setattr(pages, "EXACT_UP_TO", 10)  # in this process's app only
    with app.test_client() as client:
        body = client.get("/api/posts?per_page=2&cursor=" + _cursor("n:0:1")).get_json()
    assert body["total_exact"] is False and body["total"] >= 11


def _plans(app, monkeypatch, paths: list[str]) -> list[tuple[str, dict]]:
    """EXPLAIN (FORMAT JSON) of every list statement the app runs for these paths."""
    from app.content import pages
    from app.extensions import db

    ran = []
    fetch = pages._fetch

    def spy(stmt, params):
        ran.append((pages._sql.get(stmt) or str(stmt.compile(db.engine)), dict(params)))
        return fetch(stmt, params)

    monkeypatch.setattr(pages, "_fetch", spy)
    out = []
    with app.test_client() as client:
        for path in paths:
            del ran[:]
            app.extensions["synspirit_front_pages"].clear()
            assert client.get(path).status_code == 200, path
            assert len(ran) == 1, path
            sql, params = ran[0]
            with app.app_context():
                raw = db.engine.raw_connection()
                try:
                    cur = raw.cursor()
                    cur.execute("ANALYZE posts; ANALYZE post_comments")
                    cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
                    plan = cur.fetchone()[0]
                finally:
                    raw.close()
            out.append((path, plan[0]["Plan"] if isinstance(plan, list) else
                        json.loads(plan)[0]["Plan"]))
    return out


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_list_queries_are_index_scans_that_read_one_page(api, app, db, seed, monkeypatch):
    seeded = seed("post", 4000)
    _, token = api.register()
    post, other = api.create("post", token), api.create("post", token)
    # Comments of many posts interleave in id order: one in ten is this post's.
    db.execute(text("""
        INSERT INTO post_comments (post_id, author_id, content)
        SELECT CASE WHEN i % 10 = 0 THEN :post ELSE :other END, :author, 'seeded ' || i
        FROM generate_series(1, 5000) AS i"""),
        {"post": post["id"], "other": other["id"], "author": post["author"]["id"]})
    _recount_comments(db, [post["id"], other["id"]])
    deep_new = _cursor(f"n:{978307200 * 10**6 + 600 * 10**6}:{seeded[1800]}")
    deep_hot = _cursor(f"h:{(-100.0).hex()}:{seeded[1800]}")
    paths = {
        "/api/posts": "ix_posts_created_at_id",
        "/api/posts?sort=hot": "ix_posts_hot_score_id",
        f"/api/posts?cursor={deep_new}": "ix_posts_created_at_id",
        f"/api/posts?sort=hot&cursor={deep_hot}": "ix_posts_hot_score_id",
        "/api/posts?sort=hot&page=4&per_page=30": "ix_posts_hot_score_id",  # OFFSET 90
        f"/api/posts/{post['id']}/comments?cursor={_cursor('c:2000')}":
            "ix_post_comments_post_id_id",
    }
    for (path, plan), index in zip(_plans(app, monkeypatch, list(paths)), paths.values(),
                                   strict=True):
        nodes = list(_nodes(plan))
        scans = [n for n in nodes if n.get("Relation Name") in ("posts", "post_comments")]
        shape = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes]
        assert [n.get("Index Name") for n in scans] == [index], (path, shape)
        assert scans[0]["Node Type"] in ("Index Scan", "Index Only Scan"), (path, plan)
        assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")], path
        assert plan["Node Type"] == "Limit", path
        # the cursor is an index condition, not a filter over the rows before it; the one
        # filter is "not removed by a moderator" (few rows: it discards only those)
        if "cursor" in path:
            assert "Index Cond" in scans[0], (path, scans[0])
            assert scans[0].get("Filter", "(removed_at IS NULL)") == "(removed_at IS NULL)", (
                path, scans[0])
