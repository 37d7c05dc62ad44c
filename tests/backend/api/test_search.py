"""GET /api/search over the real gunicorn and PostgreSQL: Chinese words inside sentences,
English words, ranking, edits and deletes seen at once, paging, and the 422s.

Tests never clean tables: each one searches for words made up for it (random Han characters or
letters), so that only its own items can match."""
from __future__ import annotations

import random
import uuid

import pytest

KINDS = ["post", "article"]
_rng = random.Random()


def han(n: int = 3) -> str:
    """n random Han characters from the rarer part of the basic block: a made-up word that no
    other test's text contains."""
    return "".join(chr(_rng.randint(0x8000, 0x9FA5)) for _ in range(n))


def word() -> str:
    return "w" + "".join(_rng.choice("bcdfghjklmnpqrstvxz") for _ in range(10))


def search(api, q: str, **params):
    resp = api.get("/api/search", params={"q": q, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids(body) -> list[int]:
    return [item["id"] for item in body["items"]]


@pytest.fixture
def author(api):
    return api.register("search")[1]


def test_a_chinese_word_inside_a_sentence_is_found(api, author):
    tag = han()
    sentence = f"我昨天在知乎上写了一个很长的回答{tag}"
    post = api.create("post", author, title="回答", content=sentence)
    body = search(api, f"知乎 {tag}")
    assert ids(body) == [post["id"]]
    assert body["items"][0]["content"] == sentence
    assert set(body) == {"items", "page", "per_page", "next_cursor", "total", "total_exact"}
    assert body["total"] == 1 and body["total_exact"] is True and body["next_cursor"] is None
    assert body["items"][0]["author"]["username"]
    assert set(body["items"][0]["counts"]) == {"views", "likes", "collects", "shares",
                                               "comments"}


def test_a_made_up_name_is_found(api, author):
    name = han(3)
    post = api.create("post", author, title="新店", content=f"昨天去了{name}吃饭，很好吃")
    assert ids(search(api, name)) == [post["id"]]
    assert ids(search(api, name[:2])) == [post["id"]]  # its first two characters, a word too


def test_english_words_all_required_and_case_insensitive(api, author):
    a, b = word(), word()
    both = api.create("post", author, title=f"About {a.upper()}", content=f"some {b} text")
    only_a = api.create("post", author, title="other", content=f"only {a} here")
    assert set(ids(search(api, a))) == {both["id"], only_a["id"]}
    assert ids(search(api, f"{a} {b}")) == [both["id"]]
    assert ids(search(api, f"{b.upper()}, {a}!")) == [both["id"]]


def test_mixed_chinese_and_english(api, author):
    tag, w = han(), word()
    post = api.create("post", author, title=f"{w}教程", content=f"用{w}写一个{tag}服务")
    api.create("post", author, title="教程", content=f"没有那个词 {tag}")
    assert ids(search(api, f"{w} {tag}")) == [post["id"]]


def test_title_matches_rank_above_content_matches(api, author):
    tag = han()
    content_only = api.create("post", author, title="别的", content=f"正文里有{tag}")
    in_title = api.create("post", author, title=f"标题{tag}", content="正文没有")
    older_title = in_title["id"]
    # newer content-only match: rank, not age, puts the title match first
    newer_content = api.create("post", author, title="还有", content=f"也有{tag}在这里")
    assert ids(search(api, tag)) == [older_title, newer_content["id"], content_only["id"]]


def test_a_long_query_is_cut_by_jieba(api, author):
    tag = han()
    post = api.create("post", author, title="长句", content=f"我昨天在知乎上写了一个很长的回答{tag}")
    # jieba: 昨天/在/知乎/上/写/了/一个/很长/的/回答; single characters dropped, the rest all
    # required, each found inside the sentence's pairs
    body = search(api, f"昨天在知乎上写了一个很长的回答 {tag}")
    assert ids(body) == [post["id"]]
    # a word of the query that the text lacks: not found
    assert search(api, f"昨天在微博上写了一个很长的回答 {tag}")["items"] == []


def test_a_word_must_appear_whole(api, author):
    tag = han()
    apart = api.create("post", author, title=tag, content="中华文化与共和国的历史")
    whole = api.create("post", author, title=tag, content="中华人民共和国成立")
    assert ids(search(api, f"中华人民共和国 {tag}")) == [whole["id"]]
    assert set(ids(search(api, f"中华 {tag}"))) == {apart["id"], whole["id"]}


def test_a_single_character_matches_anywhere(api, author):
    tag = han(2)
    start, middle, end = (api.create("post", author, title=f"{tag}", content=text)
                          for text in ("鬣狗来了", "看见鬣狗", "一只鬣"))
    api.create("post", author, title=f"{tag}", content="没有那个字")
    found = set(ids(search(api, f"鬣 {tag}")))
    assert found == {start["id"], middle["id"], end["id"]}


def test_edits_are_found_at_once_and_old_text_is_not(api, author):
    old, new = han(), han()
    post = api.create("post", author, title="会改", content=f"旧的内容{old}")
    assert ids(search(api, old)) == [post["id"]]
    resp = api.patch(f"/api/posts/{post['id']}", token=author, json={"content": f"新的{new}"})
    assert resp.status_code == 200
    assert ids(search(api, new)) == [post["id"]]
    assert search(api, old)["items"] == []
    title = word()
    api.patch(f"/api/posts/{post['id']}", token=author, json={"title": title})
    assert ids(search(api, title)) == [post["id"]] and ids(search(api, new)) == [post["id"]]


def test_deleted_items_are_not_found(api, author, db):
    from sqlalchemy import text

    tag = han()
    post = api.create("post", author, title="会删", content=f"内容{tag}")
    assert ids(search(api, tag)) == [post["id"]]
    assert api.delete(f"/api/posts/{post['id']}", token=author).status_code == 204
    assert search(api, tag)["items"] == []
    assert db.execute(text("SELECT count(*) FROM post_search WHERE id = :id"),
                      {"id": post["id"]}).scalar() == 0


def test_removed_items_are_not_found(api, author, moderator):
    tag = han()
    post = api.create("post", author, title="会被移除", content=f"垃圾{tag}")
    assert ids(search(api, tag)) == [post["id"]]
    reporter = api.register("reporter")[1]
    report = api.post("/api/reports", token=reporter,
                      json={"target_type": "post", "target_id": post["id"], "reason": "spam"})
    assert report.status_code == 201, report.text
    resolved = api.post(f"/api/reports/{report.json()['id']}/resolve", token=moderator[1],
                        json={"action": "remove"})
    assert resolved.status_code in (200, 204), resolved.text
    assert search(api, tag)["items"] == []


def test_articles_with_type_article(api, author):
    tag = han()
    article = api.create("article", author, title=f"文章{tag}", content="# 标题\n\n正文")
    post = api.create("post", author, title=f"帖子{tag}", content="正文")
    body = search(api, tag, type="article")
    assert ids(body) == [article["id"]]
    assert {"content_html", "excerpt", "reading_minutes"} <= set(body["items"][0])
    assert ids(search(api, tag)) == [post["id"]]  # type defaults to post
    assert ids(search(api, tag, type="post")) == [post["id"]]


def test_pages_and_cursor(api, author):
    tag = han()
    made = [api.create("post", author, title="页", content=f"第{i}个{tag}")["id"]
            for i in range(5)]
    first = search(api, tag, per_page=2)
    assert first["total"] == 5 and first["total_exact"] is True
    assert ids(first) == made[::-1][:2]  # same rank: newest first
    seen, cursor = ids(first), first["next_cursor"]
    while cursor:
        page = search(api, tag, per_page=2, cursor=cursor)
        seen += ids(page)
        cursor = page["next_cursor"]
    assert seen == made[::-1]
    assert ids(search(api, tag, per_page=2, page=3)) == [made[0]]
    assert search(api, tag, per_page=2, page=4)["items"] == []
    assert search(api, tag, per_page=2, page=4)["total"] == 5
    # a cursor of another list is refused
    other = api.get("/api/posts", params={"per_page": 1}).json()["next_cursor"]
    resp = api.get("/api/search", params={"q": tag, "cursor": other})
    assert resp.status_code == 422 and "cursor" in resp.json()["error"]["fields"]


@pytest.mark.parametrize("params, field", [
    ({}, "q"),
    ({"q": ""}, "q"),
    ({"q": "   "}, "q"),
    ({"q": "知" * 201}, "q"),
    ({"q": "a\x00b"}, "q"),
    ({"q": "知乎", "type": "comment"}, "type"),
    ({"q": "知乎", "per_page": "0"}, "per_page"),
    ({"q": "知乎", "per_page": "101"}, "per_page"),
    ({"q": "知乎", "page": "0"}, "page"),
    ({"q": "知乎", "cursor": "garbage"}, "cursor"),
])
def test_bad_queries_are_422(api, params, field):
    resp = api.get("/api/search", params=params)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]


def test_two_hundred_characters_are_fine(api):
    search(api, "知" * 200)
    assert search(api, ("ab " * 67)[:200])["page"] == 1


@pytest.mark.parametrize("q", ["\u1160\u1160\u1160\u1160", "ーーーーー", "ゝゞゝゞ", "\u3164\u3164",
                               "𠀀𠀁𠀂𠀃", "知 & 乎 | !", "a:* <-> b", "'知乎'", "(((", "ㄱ",
                               "\u4e00" * 200])
def test_odd_queries_are_answered(api, q):
    """Characters at the edges of the CJK ranges, and tsquery syntax typed as words."""
    body = search(api, q)
    assert body["page"] == 1


@pytest.mark.parametrize("q", ["！？", "...", "，。、", "-_-", "“”"])
def test_punctuation_only_finds_nothing(api, q):
    body = search(api, q)
    assert body["items"] == [] and body["total"] == 0 and body["next_cursor"] is None


def test_search_rows_are_written_with_the_item(api, author, db):
    """The vector is written in the transaction that writes the item: CJK runs as pairs."""
    from sqlalchemy import text

    post = api.create("post", author, title="知乎上写", content=f"Hello {uuid.uuid4().hex}")
    vector = db.execute(text("SELECT vector::text FROM post_search WHERE id = :id"),
                        {"id": post["id"]}).scalar()
    for lexeme in ("'知乎':1A", "'乎上':2A", "'上写':3A", "'写':4A", "'hello':5B"):
        assert lexeme in vector, vector


@pytest.mark.parametrize("q, cjk, other", [
    ("知乎", "知乎", ""),
    ("鑫淼阁", "(鑫淼 <-> 淼阁)", ""),
    ("鬣", "鬣:*", ""),
    ("我昨天在知乎上写了一个很长的回答", "昨天 & 知乎 & 一个 & 很长 & 回答", ""),
    ("中华人民共和国", "(中华 <-> 华人 <-> 人民 <-> 民共 <-> 共和 <-> 和国)", ""),
    ("的了吗呢", "(的了 <-> 了吗 <-> 吗呢)", ""),  # jieba leaves no word: the run as typed
    ("Python 教程", "教程", "Python"),
    ("！？", "", "！？"),
])
def test_queries_are_cut_into_words(q, cjk, other):
    """No service: how app.search reads a query (jieba for runs of four or more)."""
    from app.search import parse_query

    got_cjk, got_other = parse_query(q)
    assert (got_cjk, got_other.strip()) == (cjk, other)


def test_gunicorn_loads_the_dictionary_before_the_first_request():
    from app import gunicorn_config, search

    gunicorn_config.post_worker_init(None)
    assert search._jieba is not None and search.load_dictionary() is search._jieba
