"""Search that finds Chinese words (GET /api/search, content/search.py).

Documents need no segmenter: every run of CJK characters (Han, kana, hangul) is indexed as its
overlapping character pairs plus its last character (知乎上写 -> 知乎 乎上 上写 写), the rest of
the text as PostgreSQL's `simple` text search configuration reads it (lower-cased words, no
stemming); the title with weight A, the content with B. A word of two or more characters is
then found wherever it stands in a sentence, whatever a segmenter would have made of the
sentence, and a new name (鑫淼阁) as well as a dictionary word.

The vectors live in narrow side tables, post_search and article_search (id = the item's id,
ON DELETE CASCADE, a GIN index), not in the wide, TOASTed posts/articles rows: a search reads
and rechecks thousands of vectors, and reading them out of the item rows cost 66.9 ms p95
against 40.5 ms from the side tables (docs/performance.md, Search). They are written by the
ORM hooks below in the flush that writes the item or its edit (same transaction: found at once,
gone with a delete; a removal by a moderator deletes the row). Items written by plain SQL (or by
an older release during a rolling deploy) are indexed by `flask --app app search index-missing`
(search_cli.py); the migration 0009 filled the tables for the items that existed.

Queries are cut into CJK runs and other words. A run of 2-3 characters is one word as typed;
a longer run is cut by jieba (only queries are segmented: a query is short and its user is
there to retype, a document's wrong cut would lose it for good), its single-character pieces
(的, 了) dropped. A CJK word must appear whole: the phrase of its pairs (知乎 <-> 乎上), so
中华人民共和国 is not found in a text with 中华 ... 共和国 apart. One character alone is a
prefix (found wherever it stands). Other words through plainto_tsquery('simple'). Every word
is required.
"""
from __future__ import annotations

import logging
import re
import threading

from sqlalchemy import ForeignKey, Index, Integer, event, inspect, text
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .models import Article, Post

log = logging.getLogger(__name__)

# CJK characters: kana (without the middle dot U+30FB, punctuation), hangul jamo and
# syllables, CJK unified ideographs (extension A, the basic block, compatibility, and the
# supplementary planes' extensions).
_CJK_RANGES = ("\u1100-\u11ff\u3041-\u30fa\u30fc-\u30ff\u3131-\u318e\u3400-\u4dbf"
               "\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff\U00020000-\U0003134f")
_HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
CJK_RUN = re.compile(f"[{_CJK_RANGES}]+")
_HAN_OR_NOT = re.compile(f"[{_HAN_RANGES}]+|[^{_HAN_RANGES}]+")
MAX_QUERY = 200
CANDIDATES = 1000  # ranked among the newest this many matches

TABLES = {"post": "post_search", "article": "article_search"}
ITEM_TABLES = {"post": "posts", "article": "articles"}


class PostSearch(db.Model):
    """A post's search vector (document_vector of its title and content)."""
    __tablename__ = "post_search"

    id: Mapped[int] = mapped_column(Integer, ForeignKey("posts.id", ondelete="CASCADE"),
                                    primary_key=True, autoincrement=False)
    vector: Mapped[str] = mapped_column(TSVECTOR)

    __table_args__ = (Index("ix_post_search_vector", "vector", postgresql_using="gin"),)


class ArticleSearch(db.Model):
    """An article's search vector (document_vector of its title and content)."""
    __tablename__ = "article_search"

    id: Mapped[int] = mapped_column(Integer, ForeignKey("articles.id", ondelete="CASCADE"),
                                    primary_key=True, autoincrement=False)
    vector: Mapped[str] = mapped_column(TSVECTOR)

    __table_args__ = (Index("ix_article_search_vector", "vector", postgresql_using="gin"),)


# --- documents -----------------------------------------------------------------------------------

def _indexed_text(value: str) -> str:
    """SQL: value with each CJK run written as its pairs and last character, space separated
    (知乎上写 -> '知乎 乎上 上写 写'), the other pieces as they are, in their order."""
    cjk = _CJK_RANGES
    return (
        "(SELECT coalesce(string_agg(CASE WHEN r.m[1] ~ '^[" + cjk + "]' THEN "
        "(SELECT string_agg(substr(r.m[1], i, 2), ' ' ORDER BY i) "
        "FROM generate_series(1, length(r.m[1])) AS i) ELSE r.m[1] END, ' ' ORDER BY r.n), '') "
        f"FROM regexp_matches(coalesce({value}, ''), '[" + cjk + "]+|[^" + cjk + "]+', 'g') "
        "WITH ORDINALITY AS r(m, n))")


def document_vector(title: str, content: str) -> str:
    """SQL: the search vector of an item from two SQL expressions of text (column names or
    bound parameters): used by the ORM hooks, the migration's backfill and index-missing."""
    return (f"setweight(to_tsvector('simple', {_indexed_text(title)}), 'A') || "
            f"setweight(to_tsvector('simple', {_indexed_text(content)}), 'B')")


def _upsert_sql(kind: str) -> str:
    return (f"INSERT INTO {TABLES[kind]} (id, vector) SELECT CAST(:id AS integer), "
            f"{document_vector('CAST(:title AS text)', 'CAST(:content AS text)')} "
            "ON CONFLICT (id) DO UPDATE SET vector = EXCLUDED.vector")


_UPSERT = {kind: text(_upsert_sql(kind)) for kind in TABLES}
_DELETE = {kind: text(f"DELETE FROM {table} WHERE id = :id") for kind, table in TABLES.items()}


def _write(kind: str, connection, target) -> None:
    if getattr(target, "removed_at", None) is not None:
        connection.execute(_DELETE[kind], {"id": target.id})
    else:
        connection.execute(_UPSERT[kind], {"id": target.id, "title": target.title,
                                           "content": target.content})


def _hooks(kind: str, model) -> None:
    @event.listens_for(model, "after_insert")
    def inserted(mapper, connection, target):
        _write(kind, connection, target)

    @event.listens_for(model, "after_update")
    def updated(mapper, connection, target):
        state = inspect(target)
        if any(state.attrs[name].history.has_changes()
               for name in ("title", "content", "removed_at") if name in state.attrs):
            _write(kind, connection, target)


_hooks("post", Post)
_hooks("article", Article)


def index_missing_sql(kind: str, removed: bool = True) -> str:
    """SQL: index up to :n items of kind above id :after that have no search row, in id order;
    returns the ids indexed. `removed`: skip items removed by moderators (False for the
    migration 0009, which runs before the removed_at column exists)."""
    item, table = ITEM_TABLES[kind], TABLES[kind]
    skip = "AND i.removed_at IS NULL " if removed else ""
    return (f"INSERT INTO {table} (id, vector) "
            f"SELECT i.id, {document_vector('i.title', 'i.content')} FROM {item} i "
            f"WHERE i.id > :after {skip}"
            f"AND NOT EXISTS (SELECT 1 FROM {table} s WHERE s.id = i.id) "
            "ORDER BY i.id LIMIT :n ON CONFLICT (id) DO NOTHING RETURNING id")


def index_missing(connection, kind: str, batch: int = 1000, removed: bool = True,
                  commit=None) -> int:
    """Index every item of kind that has no search row, `batch` per statement (each committed
    by `commit()` when given). Returns how many were indexed."""
    sql, after, done = text(index_missing_sql(kind, removed)), 0, 0
    while True:
        ids = connection.execute(sql, {"after": after, "n": batch}).scalars().all()
        if commit is not None:
            commit()
        if not ids:
            # RETURNING lists the rows inserted; a batch whose items were all indexed
            # meanwhile returns none: look past them before concluding.
            nxt = connection.execute(text(
                f"SELECT min(i.id) FROM {ITEM_TABLES[kind]} i WHERE i.id > :after "
                f"AND NOT EXISTS (SELECT 1 FROM {TABLES[kind]} s WHERE s.id = i.id)"
                + (" AND i.removed_at IS NULL" if removed else "")),
                {"after": after}).scalar()
            if nxt is None:
                return done
            after = nxt - 1
            continue
        done += len(ids)
        after = max(ids)


# --- queries -------------------------------------------------------------------------------------

_jieba = None
_jieba_lock = threading.Lock()


def load_dictionary():
    """jieba with its dictionary loaded (about a second, once per process): gunicorn's
    post_worker_init calls this, so that no user's first query waits for it."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def _words_of_run(run: str) -> list[str]:
    """The CJK words of one run of the query: as typed if 1-3 characters, else jieba's pieces
    of two or more characters (the run as typed if it leaves none); kana and hangul inside a
    long run are kept as typed (jieba cuts Han only)."""
    if len(run) <= 3:
        return [run]
    words = []
    for piece in _HAN_OR_NOT.findall(run):
        if not re.match(f"[{_HAN_RANGES}]", piece) or len(piece) <= 3:
            words.append(piece)
            continue
        words.extend(w for w in load_dictionary().cut(piece) if len(w) >= 2)
    words = [w for w in words if len(w) >= 2 or len(run) == 1]
    return words or [run]


def _cjk_term(word: str) -> str:
    if len(word) == 1:
        return f"{word}:*"
    return " <-> ".join(word[i:i + 2] for i in range(len(word) - 1))


def parse_query(q: str) -> tuple[str, str]:
    """(tsquery text of the CJK words for to_tsquery('simple'), the other text for
    plainto_tsquery('simple')); either may be empty."""
    words: list[str] = []
    for run in CJK_RUN.findall(q):
        for w in _words_of_run(run):
            if w not in words:
                words.append(w)
    terms = [_cjk_term(w) if len(w) <= 2 else f"({_cjk_term(w)})" for w in words]
    return " & ".join(terms), CJK_RUN.sub(" ", q)


def tsquery_sql(cjk: str, other: str) -> str | None:
    """SQL of the query's tsquery from the bound parameters %(cjk)s and %(other)s, or None when
    the query has no word to look for (punctuation only)."""
    has_other = bool(re.search(r"[^\W_]", other))
    if cjk and has_other:
        return "(to_tsquery('simple', %(cjk)s) && plainto_tsquery('simple', %(other)s))"
    if cjk:
        return "to_tsquery('simple', %(cjk)s)"
    if has_other:
        return "plainto_tsquery('simple', %(other)s)"
    return None
