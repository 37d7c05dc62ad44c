"""GET /api/search?q=...&type=post|article: posts or articles whose titles and contents hold
every word of q, Chinese words inside sentences included (app/search.py explains the index and
how a query is cut), best matches first, paged as the lists are (content/pages.py).

Rank: the newest CANDIDATES (1,000) matching items are the candidates, ordered by ts_rank_cd
(title words weigh A, content words B), then newest first. Reading and ranking every match of
a common word would cost in proportion to the table; the newest 1,000 cost the same at 100,000
posts as at 10 million (`make bench`, search). `total` counts the candidates: exact up to
1,000, else 1,000 with `total_exact` false. Pages: `page` within the candidates, or `cursor`
(rank and id of the last item, tag "s")."""
from __future__ import annotations

from types import SimpleNamespace

from flask import Blueprint, jsonify

from .. import rawdb
from ..search import CANDIDATES, ITEM_TABLES, TABLES, parse_query, tsquery_sql
from ..validation import SearchQuery, query
from . import pages

bp = Blueprint("search", __name__, url_prefix="/api/search")

_statements: dict[tuple, str] = {}


def _statement(kind: str, tsquery: str, keyset: bool) -> str:
    key = (kind, tsquery, keyset)
    sql = _statements.get(key)
    if sql is not None:
        return sql
    names = pages._CONTENT_COLUMNS + (pages._ARTICLE_COLUMNS if kind == "article" else ())
    columns = ", ".join(f"i.{n}" for n in names)
    after = "AND (c.rank, c.id) < (CAST(%(k0)s AS real), %(k1)s) " if keyset else ""
    # The candidates: the newest matches (the GIN index finds them, a top-N sort by id keeps
    # 1,001: one more says whether there are more than 1,000). Ranked: only those.
    sql = _statements[key] = f"""
        WITH m AS MATERIALIZED (
            SELECT s.id, ts_rank_cd(s.vector, {tsquery}) AS rank
            FROM (SELECT id, vector FROM {TABLES[kind]} WHERE vector @@ {tsquery}
                  ORDER BY id DESC LIMIT {CANDIDATES + 1}) AS s)
        SELECT {columns}, c.rank, u.id, u.username, (SELECT count(*) FROM m)
        FROM (SELECT id, rank FROM m ORDER BY id DESC LIMIT {CANDIDATES}) AS c
        JOIN {ITEM_TABLES[kind]} i ON i.id = c.id
        JOIN users u ON u.id = i.author_id
        WHERE i.removed_at IS NULL {after}
        ORDER BY c.rank DESC, c.id DESC
        LIMIT %(n)s OFFSET %(skip)s"""
    return sql


@bp.get("")
def search():
    q = query(SearchQuery)
    cjk, other = parse_query(q.q)
    tsquery = tsquery_sql(cjk, other)
    body = {"items": [], "page": q.page, "per_page": q.per_page, "next_cursor": None,
            "total": 0, "total_exact": True}
    if tsquery is None:  # nothing to look for (punctuation only)
        if q.cursor is not None:
            pages.decode_cursor("search", q.cursor)
        return jsonify(body)
    params = {"cjk": cjk, "other": other, "n": q.per_page + 1,
              "skip": (q.page - 1) * q.per_page}
    if q.cursor is not None:
        params["k0"], params["k1"] = pages.decode_cursor("search", q.cursor)
    rows = rawdb.fetch(_statement(q.type, tsquery, q.cursor is not None), params)
    more = len(rows) > q.per_page
    rows = rows[:q.per_page]
    serialize = pages._content_row(q.type == "article")
    body["items"] = [serialize(r[:-1]) for r in rows]
    if more:
        last = rows[-1]
        body["next_cursor"] = pages.encode_cursor(
            "search", SimpleNamespace(rank=last[-4], id=last[0]))
    if rows:
        found = rows[0][-1]
        body["total"], body["total_exact"] = min(found, CANDIDATES), found <= CANDIDATES
    elif q.page == 1 and q.cursor is None:
        body["total"] = 0
    else:  # past the last page: count the candidates alone
        found = rawdb.fetch(
            f"SELECT count(*) FROM (SELECT 1 FROM {TABLES[q.type]} WHERE vector @@ {tsquery} "
            f"LIMIT {CANDIDATES + 1}) AS s", params)[0][0]
        body["total"], body["total_exact"] = min(found, CANDIDATES), found <= CANDIDATES
    return jsonify(body)
