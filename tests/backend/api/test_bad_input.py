"""Bad input, table-driven, for every endpoint: a 4xx with {"error": {"code", "message"}} and
nothing written."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from testkit.apiclient import API

BIG = "x" * (1024 * 1024 + 1)


@pytest.fixture(scope="module")
def world(server):
    """Two users, a post and an article with a comment each, shared by the cases below."""
    api = API(server)
    _, owner = api.register("own")
    _, other = api.register("oth")
    return {"api": api, "owner": owner, "other": other, "ids": api.items_with_comments(owner)}


def _cases():
    """(name, method, path, who, body-or-raw, expected status, expected error code)."""
    cases = [
        # auth/register
        ("register: not JSON", "POST", "/api/auth/register", None, b"{nope", 400, "invalid_json"),
        ("register: JSON list", "POST", "/api/auth/register", None, [1], 400, "invalid_body"),
        ("register: short name", "POST", "/api/auth/register", None,
         {"username": "ab", "password": "long-enough"}, 422, "validation_error"),
        ("register: long name", "POST", "/api/auth/register", None,
         {"username": "a" * 33, "password": "long-enough"}, 422, "validation_error"),
        ("register: bad chars", "POST", "/api/auth/register", None,
         {"username": "bad name!", "password": "long-enough"}, 422, "validation_error"),
        ("register: short password", "POST", "/api/auth/register", None,
         {"username": "okname", "password": "short"}, 422, "validation_error"),
        ("register: long password", "POST", "/api/auth/register", None,
         {"username": "okname", "password": "p" * 129}, 422, "validation_error"),
        ("register: number name", "POST", "/api/auth/register", None,
         {"username": 12345, "password": "long-enough"}, 422, "validation_error"),
        ("register: missing", "POST", "/api/auth/register", None, {}, 422, "validation_error"),
        ("login: wrong types", "POST", "/api/auth/login", None,
         {"username": ["x"], "password": None}, 422, "validation_error"),
        ("login: not JSON", "POST", "/api/auth/login", None, b"\xff\xfe", 400, "invalid_json"),
        # A lone surrogate is valid JSON ("\ud800") but no UTF-8 text can hold it.
        ("register: lone surrogate", "POST", "/api/auth/register", None,
         {"username": "okname", "password": "pass\ud800word"}, 422, "validation_error"),
        ("login: lone surrogate", "POST", "/api/auth/login", None,
         {"username": "x\udfff", "password": "long-enough"}, 422, "validation_error"),
        ("password: lone surrogate", "POST", "/api/auth/password", "other",
         {"current_password": "correct-horse", "new_password": "pass\ud800word"}, 422,
         "validation_error"),
        ("me: no token", "GET", "/api/me", None, None, 401, "unauthorized"),
        # actions
        ("action: no token", "POST", "/api/actions", None,
         {"action": "like", "target_type": "post", "target_id": "{post}"}, 401, "unauthorized"),
        ("action: unknown action", "POST", "/api/actions", "other",
         {"action": "love", "target_type": "post", "target_id": "{post}"}, 422,
         "validation_error"),
        ("action: unknown type", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "user", "target_id": 1}, 422, "validation_error"),
        ("action: id as string", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "post", "target_id": "1"}, 422, "validation_error"),
        ("action: id as float", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "post", "target_id": 1.5}, 422, "validation_error"),
        ("action: id as bool", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "post", "target_id": True}, 422, "validation_error"),
        ("action: id zero", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "post", "target_id": 0}, 422, "validation_error"),
        ("action: id too big", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "post", "target_id": 2**63}, 422, "validation_error"),
        ("action: unknown id", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "post", "target_id": 2147483647}, 404, "not_found"),
        ("action: unknown comment", "POST", "/api/actions", "other",
         {"action": "like", "target_type": "article_comment", "target_id": 2147483646}, 404,
         "not_found"),
        ("action: collect comment", "POST", "/api/actions", "other",
         {"action": "collect", "target_type": "post_comment", "target_id": "{post_comment}"},
         400, "unsupported_action"),
        ("undo: share", "DELETE", "/api/actions", "other",
         {"action": "share", "target_type": "article", "target_id": "{article}"}, 400,
         "irreversible_action"),
        ("undo: not JSON", "DELETE", "/api/actions", "other", b"[", 400, "invalid_json"),
        ("action: body too large", "POST", "/api/actions", "other", BIG.encode(), 413,
         "request_entity_too_large"),
        ("unknown route", "GET", "/api/nothing-here", None, None, 404, "not_found"),
        ("wrong method", "PUT", "/api/posts", None, None, 405, "method_not_allowed"),
    ]
    for kind in ("post", "article"):
        base = f"/api/{kind}s"
        item = f"{base}/{{{kind}}}"
        cases += [
            (f"{kind}: create without token", "POST", base, None,
             {"title": "t", "content": "c"}, 401, "unauthorized"),
            (f"{kind}: create not JSON", "POST", base, "owner", b"title=t", 400, "invalid_json"),
            (f"{kind}: create missing title", "POST", base, "owner", {"content": "c"}, 422,
             "validation_error"),
            (f"{kind}: create empty title", "POST", base, "owner",
             {"title": "", "content": "c"}, 422, "validation_error"),
            (f"{kind}: create blank title", "POST", base, "owner",
             {"title": "   ", "content": "c"}, 422, "validation_error"),
            (f"{kind}: create long title", "POST", base, "owner",
             {"title": "t" * 201, "content": "c"}, 422, "validation_error"),
            (f"{kind}: create long content", "POST", base, "owner",
             {"title": "t", "content": "c" * 20001}, 422, "validation_error"),
            (f"{kind}: create NUL content", "POST", base, "owner",
             {"title": "t", "content": "a\x00b"}, 422, "validation_error"),
            (f"{kind}: create lone surrogate title", "POST", base, "owner",
             {"title": "\ud800", "content": "c"}, 422, "validation_error"),
            (f"{kind}: create lone surrogate content", "POST", base, "owner",
             b'{"title": "t", "content": "a\\udc00b"}', 422, "validation_error"),
            (f"{kind}: patch lone surrogate", "PATCH", item, "owner", {"content": "\udbff"},
             422, "validation_error"),
            (f"{kind}: comment lone surrogate", "POST", f"{item}/comments", "other",
             {"content": "\ud83d"}, 422, "validation_error"),
            (f"{kind}: create title number", "POST", base, "owner",
             {"title": 7, "content": "c"}, 422, "validation_error"),
            (f"{kind}: create body too large", "POST", base, "owner", BIG.encode(), 413,
             "request_entity_too_large"),
            (f"{kind}: list per_page 101", "GET", f"{base}?per_page=101", None, None, 422,
             "validation_error"),
            (f"{kind}: list per_page 0", "GET", f"{base}?per_page=0", None, None, 422,
             "validation_error"),
            (f"{kind}: list page text", "GET", f"{base}?page=two", None, None, 422,
             "validation_error"),
            (f"{kind}: list page 0", "GET", f"{base}?page=0", None, None, 422, "validation_error"),
            (f"{kind}: list page +2", "GET", f"{base}?page=%2B2", None, None, 422,
             "validation_error"),
            (f"{kind}: list page 1.0", "GET", f"{base}?page=1.0", None, None, 422,
             "validation_error"),
            (f"{kind}: list per_page 1_0", "GET", f"{base}?per_page=1_0", None, None, 422,
             "validation_error"),
            (f"{kind}: list bad sort", "GET", f"{base}?sort=random", None, None, 422,
             "validation_error"),
            (f"{kind}: get unknown", "GET", f"{base}/2147483647", None, None, 404, "not_found"),
            (f"{kind}: get huge id", "GET", f"{base}/99999999999999999999", None, None, 404,
             "not_found"),
            (f"{kind}: get negative id", "GET", f"{base}/-1", None, None, 404, "not_found"),
            (f"{kind}: get text id", "GET", f"{base}/abc", None, None, 404, "not_found"),
            (f"{kind}: patch without token", "PATCH", item, None, {"title": "x"}, 401,
             "unauthorized"),
            (f"{kind}: patch by other", "PATCH", item, "other", {"title": "x"}, 403, "forbidden"),
            (f"{kind}: patch nothing", "PATCH", item, "owner", {}, 422, "validation_error"),
            (f"{kind}: patch empty title", "PATCH", item, "owner", {"title": ""}, 422,
             "validation_error"),
            (f"{kind}: patch unknown", "PATCH", f"{base}/2147483647", "owner", {"title": "x"},
             404, "not_found"),
            (f"{kind}: delete without token", "DELETE", item, None, None, 401, "unauthorized"),
            (f"{kind}: delete by other", "DELETE", item, "other", None, 403, "forbidden"),
            (f"{kind}: delete unknown", "DELETE", f"{base}/2147483647", "owner", None, 404,
             "not_found"),
            (f"{kind}: comment without token", "POST", f"{item}/comments", None,
             {"content": "c"}, 401, "unauthorized"),
            (f"{kind}: comment empty", "POST", f"{item}/comments", "other", {"content": ""}, 422,
             "validation_error"),
            (f"{kind}: comment long", "POST", f"{item}/comments", "other",
             {"content": "c" * 5001}, 422, "validation_error"),
            (f"{kind}: comment not JSON", "POST", f"{item}/comments", "other", b"}", 400,
             "invalid_json"),
            (f"{kind}: comment on unknown", "POST", f"{base}/2147483647/comments", "other",
             {"content": "c"}, 404, "not_found"),
            (f"{kind}: comments of unknown", "GET", f"{base}/2147483647/comments", None, None,
             404, "not_found"),
            (f"{kind}: comments per_page 500", "GET", f"{item}/comments?per_page=500", None,
             None, 422, "validation_error"),
            (f"{kind}: delete comment by other", "DELETE",
             f"{item}/comments/{{{kind}_comment}}", "other", None, 403, "forbidden"),
            (f"{kind}: delete unknown comment", "DELETE", f"{item}/comments/2147483647",
             "owner", None, 404, "not_found"),
        ]
    return cases


CASES = _cases()


def _row_total(db) -> int:
    return db.execute(text(
        "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM posts)"
        " + (SELECT count(*) FROM articles) + (SELECT count(*) FROM post_comments)"
        " + (SELECT count(*) FROM article_comments) + (SELECT count(*) FROM reactions)")).scalar()


@pytest.mark.parametrize("name, method, path, who, body, status, code", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(world, db, name, method, path, who, body, status, code):
    api, ids = world["api"], world["ids"]
    path = path.format(**ids)
    if isinstance(body, dict):
        body = {k: (int(v.format(**ids)) if isinstance(v, str) and v.startswith("{") else v)
                for k, v in body.items()}
    token = world[who] if who else None
    db.rollback()
    before = _row_total(db)
    if isinstance(body, bytes):
        resp = api.call(method, path, token=token, data=body,
                        headers={"Content-Type": "application/json"})
    else:
        resp = api.call(method, path, token=token, json=body)
    assert resp.status_code == status, resp.text
    if status == 405:
        assert "GET" in resp.headers["Allow"], "a 405 says which methods are allowed"
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]
    if status == 422:
        assert error["fields"], "a validation error names the offending fields"
    db.rollback()
    assert _row_total(db) == before, "a rejected request wrote something"
