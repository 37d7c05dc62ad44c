"""The HTTP API fuzzed from its OpenAPI document (schemathesis) against the real gunicorn, then
the database checked: no 5xx, no response outside the documented schema, no invariant broken.

- test_every_operation_conforms: every operation of /api/openapi.json, positive and negative
  cases (examples, coverage and fuzzing phases), with all of schemathesis's checks (server
  errors, status codes, content types, headers and bodies against the document, negative data
  rejected, auth enforced, use after free, ...). Half of the generated ids are mapped onto
  posts, articles and comments that exist (some the fuzzer's own, some another user's), so that
  edits, deletes, comments and actions really happen instead of all ending in 404.
- test_stateful_workflows: chains along the document's links (create -> read, edit, comment,
  delete) among the posts', articles' and comments' operations, a bounded number of steps.
- test_invariants_hold_after_fuzzing: in PostgreSQL no count is negative, every count column
  converges to its rows within a few seconds after the fuzzing stops, no reaction points to a
  missing target, no comment lacks its parent, and gunicorn logged no unhandled error.

Bounded: about FUZZ_EXAMPLES generated cases per operation (env SYNSPIRIT_FUZZ_EXAMPLES; 10
for register/login, SYNSPIRIT_FUZZ_AUTH_EXAMPLES) plus schemathesis's coverage cases,
deterministic (derandomized) so a failure reproduces. Traffic only to the loopback server.
"""
from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import text

from testkit.apiclient import API

pytestmark = pytest.mark.usefixtures("celery_workers", "beat")

FUZZ_EXAMPLES = int(os.environ.get("SYNSPIRIT_FUZZ_EXAMPLES", "50"))
# Register and login hash a password with Argon2id (64 MiB, t=3) per call: fewer generated
# cases there (their coverage-phase cases all still run).
AUTH_EXAMPLES = int(os.environ.get("SYNSPIRIT_FUZZ_AUTH_EXAMPLES", "10"))
STATEFUL_EXAMPLES = int(os.environ.get("SYNSPIRIT_FUZZ_STATEFUL_EXAMPLES", "25"))
MAX_ID = 2**31 - 1
LOGS = Path(__file__).resolve().parents[3] / ".data" / "test" / "logs"

# What the fuzzing did, for the summary (and the invariants test).
STATS = {"cases": 0, "by_status": {}, "stateful_steps": 0, "started": 0.0, "seconds": 0.0,
         "by_operation": {}}
WORLD: dict = {}


def _gunicorn_log() -> Path:
    return LOGS / f"gunicorn-{os.getpid()}.log"


@pytest.fixture(scope="module")
def fuzz_world(server, stack_env):
    """The fuzzer's user (whose token every case carries) and a pool of items with comments,
    half of them the fuzzer's own, half another user's; a third user whose sessions the cases of
    logout and password change end."""
    api = API(server)
    _, token = api.register("fuzz")
    _, other = api.register("fuzzother")
    _, sessions = api.register("fuzzsessions")
    pool = {"post": [], "article": [], "post_comment": [], "article_comment": []}
    pairs = {"post": [], "article": []}  # (item id, comment id)
    for kind in ("post", "article"):
        for i in range(8):
            owner = token if i % 2 == 0 else other
            item = api.create(kind, owner, title=f"seed {i}", content=f"seed *{kind}* {i}")
            pool[kind].append(item["id"])
            for commenter in (token, other):
                comment = api.post(f"/api/{kind}s/{item['id']}/comments", token=commenter,
                                   json={"content": f"seed comment {i}"}).json()
                pool[f"{kind}_comment"].append(comment["id"])
                pairs[kind].append((item["id"], comment["id"]))
    # Real cursors: a generated string is schema-valid but names no position (a 422), so the
    # generated cursors are mapped onto these (map_query).
    cursors = {
        (kind, sort): api.get(f"/api/{kind}s?per_page=1&sort={sort}").json()["next_cursor"]
        for kind in ("post", "article") for sort in ("new", "hot")}
    for kind in ("post", "article"):
        cursors[(kind, "comments")] = api.get(
            f"/api/{kind}s/{pool[kind][0]}/comments?per_page=1").json()["next_cursor"]
        cursors[(kind, "search")] = api.get(  # the seed items' titles: "seed <i>"
            "/api/search", params={"q": "seed", "type": kind, "per_page": 1}).json()["next_cursor"]
    WORLD.update(token=token, other=other, pool=pool, pairs=pairs, cursors=cursors,
                 sessions=(stack_env["SECRET_KEY"], sessions),
                 log_start=_gunicorn_log().stat().st_size if _gunicorn_log().exists() else 0)
    return WORLD


def _valid_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _valid_page(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000


def _kind_of(path: str) -> str | None:
    if path.startswith("/api/posts/"):
        return "post"
    if path.startswith("/api/articles/"):
        return "article"
    return None


def _install_hooks(schema) -> None:
    """Map half of the valid generated ids onto existing items. Only valid ids are replaced,
    and by other valid ids, so a negative (invalid) case stays negative."""

    @schema.hook
    def map_path_parameters(context, path_parameters):
        kind = _kind_of(context.operation.path)
        if not kind or not WORLD or not isinstance(path_parameters, dict):
            return path_parameters
        item_id = path_parameters.get("item_id")
        if not _valid_id(item_id) or item_id % 2:
            return path_parameters
        params = dict(path_parameters)
        if "comment_id" in params and _valid_id(params["comment_id"]):
            pair = WORLD["pairs"][kind][item_id % len(WORLD["pairs"][kind])]
            params["item_id"], params["comment_id"] = pair
        else:
            params["item_id"] = WORLD["pool"][kind][item_id % len(WORLD["pool"][kind])]
        return params

    @schema.hook
    def map_query(context, query):  # the state machine's cases (_run_case maps the others)
        return _map_list_query(context.operation.method, context.operation.path, query)

    @schema.hook
    def map_body(context, body):
        if context.operation.path != "/api/actions" or not WORLD or not isinstance(body, dict):
            return body
        target_id, target_type = body.get("target_id"), body.get("target_type")
        if target_type in WORLD["pool"] and _valid_id(target_id) and target_id % 2 == 0:
            ids = WORLD["pool"][target_type]
            return {**body, "target_id": ids[target_id % len(ids)]}
        return body

    @schema.hook
    def after_call(context, case, response):
        STATS["cases"] += 1
        STATS["by_status"][response.status_code] = STATS["by_status"].get(response.status_code, 0) + 1


OPENAPI = Path(__file__).resolve().parents[3] / "backend" / "app" / "openapi.json"
# The file is the served document (test_openapi.py checks it); the server is only known once
# the `server` fixture runs, so each call gets base_url and the token explicitly.
schema = schemathesis.openapi.from_path(OPENAPI)
schema.config.update(request_timeout=30)
schema.config.generation.update(max_examples=FUZZ_EXAMPLES, deterministic=True)
_install_hooks(schema)


# These end the session of the token they carry: each case gets a token of its own.
SESSION_ENDING = {"/api/auth/logout", "/api/auth/password"}


def _fresh_session(fuzz_world) -> str:
    """Another token of the sessions user, minted as the server does (a login per case would
    hash a password each time, and meet the login budget that fuzzing login has spent)."""
    secret, token = fuzz_world["sessions"]
    serializer = URLSafeTimedSerializer(secret, salt="synspirit-auth")
    return serializer.dumps({**serializer.loads(token), "jti": uuid.uuid4().hex})


def _map_list_query(method: str, path: str, query):
    """A schema-valid cursor is replaced by a real one of the same list, and a valid page
    number by one the list accepts with it (page x per_page <= 1000, page 1 with a cursor):
    a cursor's meaning and that product are not in the document's types. Invalid values are
    left as they are, so a negative case stays negative. Applied in _run_case, to the cases of
    every phase, and by the map_query hook to the state machine's."""
    if not WORLD or not isinstance(query, dict) or method.upper() != "GET":
        return query
    if path not in ("/api/posts", "/api/articles", "/api/search") \
            and not path.endswith("/comments"):
        return query
    query = dict(query)
    kind = "article" if path.startswith("/api/articles") else "post"
    sort = "comments" if path.endswith("/comments") else query.get("sort", "new")
    if path == "/api/search":
        kind = query.get("type") if query.get("type") in ("post", "article") else "post"
        sort = "search"
    cursor = query.get("cursor")
    if isinstance(cursor, str) and 1 <= len(cursor) <= 200 and sort in ("new", "hot",
                                                                         "comments", "search"):
        query["cursor"] = WORLD["cursors"][(kind, sort)]
    page, per_page = _number(query.get("page", 1)), _number(query.get("per_page", 20))
    if _valid_page(page) and isinstance(per_page, int) and 1 <= per_page <= 100:
        as_given = type(query.get("page", 1))  # the coverage phase's values may be text
        if "cursor" in query and query["cursor"] in WORLD["cursors"].values():
            query["page"] = as_given(1)
        elif page * per_page > 1000:
            query["page"] = as_given(1000 // per_page)
    return query


def _number(value):
    """A query value as the app reads it: an int, or text of plain digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_case(case, server, fuzz_world) -> None:
    started = time.monotonic()
    case.query = _map_list_query(case.operation.method, case.operation.path, case.query)
    token = (_fresh_session(fuzz_world) if case.operation.path in SESSION_ENDING
             else fuzz_world["token"])
    try:
        case.call_and_validate(base_url=server, headers={"Authorization": f"Bearer {token}"})
    finally:
        took = time.monotonic() - started
        STATS["seconds"] += took
        label = case.operation.label
        n, t = STATS["by_operation"].get(label, (0, 0.0))
        STATS["by_operation"][label] = (n + 1, t + took)


_FUZZ_SETTINGS = {"deadline": None, "derandomize": True, "database": None,
                  "suppress_health_check": list(HealthCheck),
                  "phases": [Phase.explicit, Phase.generate]}


@schema.exclude(path_regex="^/api/auth/").parametrize()
@settings(max_examples=FUZZ_EXAMPLES, **_FUZZ_SETTINGS)
def test_every_operation_conforms(case, server, fuzz_world):
    """No 5xx and nothing outside the documented schema, for any generated request."""
    _run_case(case, server, fuzz_world)


@schema.include(path_regex="^/api/auth/").parametrize()
@settings(max_examples=AUTH_EXAMPLES, **_FUZZ_SETTINGS)
def test_auth_operations_conform(case, server, fuzz_world):
    """The same for register and login, with fewer generated cases (Argon2id per call)."""
    _run_case(case, server, fuzz_world)


def test_stateful_workflows(server, fuzz_world):
    """Sequences along the document's links: a created post or article is then read, edited,
    commented on and deleted, with every response checked against the document."""
    schema.config.update(base_url=server,
                         headers={"Authorization": f"Bearer {fuzz_world['token']}"})
    # Only the operations the links join (posts, articles, their comments): with every other
    # operation among its rules, hypothesis saw rules valid in one run and not on replay (their
    # validity follows the server's answers) and raised FlakyStrategyDefinition. The others are
    # fuzzed one by one above.
    machine = schema.include(path_regex="^/api/(posts|articles)").as_state_machine()
    calls_before = STATS["cases"]
    started = time.monotonic()
    machine.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=6,
                                  deadline=None, derandomize=True, database=None,
                                  suppress_health_check=list(HealthCheck)))
    STATS["stateful_steps"] = STATS["cases"] - calls_before
    STATS["seconds"] += time.monotonic() - started


# --- invariants in PostgreSQL, after the fuzzing --------------------------------------------------

NEGATIVE_COUNTS = """
SELECT 'post ' || id FROM posts WHERE least(views_count, likes_count, collects_count,
       shares_count, comments_count) < 0
UNION ALL SELECT 'article ' || id FROM articles WHERE least(views_count, likes_count,
       collects_count, shares_count, comments_count) < 0
UNION ALL SELECT 'post_comment ' || id FROM post_comments WHERE likes_count < 0
UNION ALL SELECT 'article_comment ' || id FROM article_comments WHERE likes_count < 0
"""

# Every cached count against the rows it counts (views are not rows: only >= 0 above).
_ITEM_DRIFT = """
SELECT '{kind} ' || i.id || ': ' || concat_ws(',',
         CASE WHEN i.likes_count <> r.likes THEN 'likes ' || i.likes_count || '<>' || r.likes END,
         CASE WHEN i.collects_count <> r.collects
              THEN 'collects ' || i.collects_count || '<>' || r.collects END,
         CASE WHEN i.shares_count <> r.shares THEN 'shares ' || i.shares_count || '<>' || r.shares END,
         CASE WHEN i.comments_count <> c.n THEN 'comments ' || i.comments_count || '<>' || c.n END)
FROM {table} i
CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE action = 'like') AS likes,
                           count(*) FILTER (WHERE action = 'collect') AS collects,
                           count(*) FILTER (WHERE action = 'share') AS shares
                    FROM reactions WHERE {fk} = i.id) r
CROSS JOIN LATERAL (SELECT count(*) AS n FROM {comments} WHERE {fk} = i.id) c
WHERE i.likes_count <> r.likes OR i.collects_count <> r.collects OR i.shares_count <> r.shares
   OR i.comments_count <> c.n
"""
_COMMENT_DRIFT = """
SELECT '{table} ' || c.id || ': likes ' || c.likes_count || '<>' || r.n
FROM {table} c CROSS JOIN LATERAL (SELECT count(*) AS n FROM reactions
                                   WHERE {fk} = c.id AND action = 'like') r
WHERE c.likes_count <> r.n
"""
DRIFT = " UNION ALL ".join([
    _ITEM_DRIFT.format(kind="post", table="posts", fk="post_id", comments="post_comments"),
    _ITEM_DRIFT.format(kind="article", table="articles", fk="article_id",
                       comments="article_comments"),
    _COMMENT_DRIFT.format(table="post_comments", fk="post_comment_id"),
    _COMMENT_DRIFT.format(table="article_comments", fk="article_comment_id"),
])

ORPHANS = """
SELECT 'reaction ' || r.id || ' without its target' FROM reactions r
 WHERE num_nonnulls(r.post_id, r.article_id, r.post_comment_id, r.article_comment_id) <> 1
    OR (r.post_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM posts WHERE id = r.post_id))
    OR (r.article_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM articles WHERE id = r.article_id))
    OR (r.post_comment_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM post_comments WHERE id = r.post_comment_id))
    OR (r.article_comment_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM article_comments WHERE id = r.article_comment_id))
    OR NOT EXISTS (SELECT 1 FROM users WHERE id = r.user_id)
UNION ALL SELECT 'post_comment ' || c.id || ' without its post' FROM post_comments c
 WHERE NOT EXISTS (SELECT 1 FROM posts WHERE id = c.post_id)
UNION ALL SELECT 'article_comment ' || c.id || ' without its article' FROM article_comments c
 WHERE NOT EXISTS (SELECT 1 FROM articles WHERE id = c.article_id)
UNION ALL SELECT 'post ' || id || ' without its author' FROM posts p
 WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = p.author_id)
UNION ALL SELECT 'article ' || id || ' without its author' FROM articles a
 WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = a.author_id)
"""


def _rows(db, sql: str) -> list[str]:
    db.rollback()  # a fresh snapshot
    return [row[0] for row in db.execute(text(sql))]


def test_invariants_hold_after_fuzzing(db, server, fuzz_world):
    """After the fuzzing: no negative count, counts converge to the rows within a few seconds,
    no orphan rows, and gunicorn logged no unhandled error while being fuzzed."""
    sys.stderr.write(f"\nfuzzing: {STATS['cases']} requests ({STATS['stateful_steps']} in "
                     f"stateful workflows) in {STATS['seconds']:.0f} s; statuses "
                     f"{dict(sorted(STATS['by_status'].items()))}\n")
    for label, (n, took) in sorted(STATS["by_operation"].items(), key=lambda kv: -kv[1][1]):
        sys.stderr.write(f"  {label}: {n} test cases, {took:.1f} s\n")
    assert STATS["cases"] > 0, "the fuzzing tests did not run first"
    assert _rows(db, NEGATIVE_COUNTS) == []
    assert _rows(db, ORPHANS) == []
    deadline = time.monotonic() + 10
    drift = _rows(db, DRIFT)
    while drift and time.monotonic() < deadline:
        time.sleep(0.25)
        drift = _rows(db, DRIFT)
    assert drift == [], "counts did not converge to the rows within 10 s"
    # The fuzzing made real changes, not only 4xx: the invariants above mean something.
    assert sum(n for status, n in STATS["by_status"].items() if 200 <= status < 300) > 0
    log = _gunicorn_log()
    if log.exists():
        with open(log, "rb") as f:
            f.seek(fuzz_world["log_start"])
            new = f.read().decode(errors="replace")
        for marker in ("unhandled error", "Traceback", "WORKER TIMEOUT", "Booting worker"):
            assert marker not in new, f"gunicorn log during the fuzzing:\n{new[-4000:]}"
    assert requests.get(server + "/healthz", timeout=5).status_code == 200

