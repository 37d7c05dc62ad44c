"""Pure logic (no services): rendering, ranking, validation, the Celery pool switch."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from app import rendering
from app.ranking import hot_score
from app.validation import ActionBody, ContentCreate, parse
from app.worker_pool import pool_from_argv

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("source, present, absent", [
    ("**b** _i_", ["<strong>b</strong>", "<em>i</em>"], []),
    ("<script>alert(1)</script>", ["&lt;script&gt;"], ["<script>"]),
    ("[x](javascript:alert(1))", [], ['href="javascript']),
    ('<img src=x onerror="alert(1)">', ["&lt;img"], ["<img"]),
    ("| a | b |\n|---|---|\n| 1 | 2 |", ["<table>", "<td>1</td>"], []),
    ("[ok](https://example.org)", ['href="https://example.org"', 'rel="nofollow'], []),
])
def test_markdown_is_rendered_and_sanitized(source, present, absent):
    html = rendering.render_markdown(source)
    for fragment in present:
        assert fragment in html
    for fragment in absent:
        assert fragment not in html


def test_excerpt_cuts_on_a_word_and_reading_time_counts_cjk():
    text = "word " * 100
    excerpt = rendering.excerpt(text.strip())
    assert len(excerpt) <= rendering.EXCERPT_CHARS + 1 and excerpt.endswith("word…")
    assert rendering.reading_minutes("word " * 460) == 2  # 230 words a minute
    assert rendering.reading_minutes("知" * 800) == 2  # 400 characters a minute
    assert rendering.reading_minutes("") == 1


@pytest.mark.parametrize("source, shown", [
    ('<img src=x onerror="alert(1)">', '<img src=x onerror="alert(1)">'),
    ("`<script>x()</script>` & 'quotes'", "<script>x()</script> & 'quotes'"),
    ("**bold** <b>not a tag</b>", "bold <b>not a tag</b>"),
])
def test_the_excerpt_is_html_escaped_text(source, shown):
    """Markup written as text comes back escaped: inserted as HTML, it shows and runs nothing."""
    import html

    excerpt = rendering.render_article(source)["excerpt"]
    assert not set("<>\"'") & set(excerpt), excerpt
    assert html.unescape(excerpt) == shown


def test_hot_score_rises_with_engagement_and_decays_with_age():
    fresh = hot_score(100, 10, 2, 1, 5, NOW - timedelta(hours=1), NOW)
    busier = hot_score(100, 20, 2, 1, 5, NOW - timedelta(hours=1), NOW)
    older = hot_score(100, 10, 2, 1, 5, NOW - timedelta(days=2), NOW)
    assert busier > fresh > older > 0
    assert hot_score(0, 0, 0, 0, 0, NOW, NOW) == 0


@pytest.mark.parametrize("data", [
    {"action": "like", "target_type": "post", "target_id": "3"},
    {"action": "like", "target_type": "post", "target_id": 3.0},
    {"action": "like", "target_type": "post", "target_id": True},
    {"action": "like", "target_type": "post", "target_id": 2**31},
])
def test_ids_are_strict_integers_in_range(data):
    with pytest.raises(Exception) as err:
        parse(ActionBody, data)
    assert err.value.status == 422 and "target_id" in err.value.fields


def test_content_text_rejects_nul_and_blank():
    for bad in ({"title": "ok", "content": "a\x00"}, {"title": " \n", "content": "c"}):
        with pytest.raises(Exception) as err:
            parse(ContentCreate, bad)
        assert err.value.status == 422


@pytest.mark.parametrize("argv, pool", [
    (["celery", "-A", "app.celery_utils", "worker", "--pool=gevent"], "gevent"),
    (["celery", "worker", "-P", "prefork"], "prefork"),
    (["celery", "worker", "-Pgevent"], "gevent"),
    (["celery", "worker", "--pool", "solo"], "solo"),
    (["celery", "beat"], None),
])
def test_the_worker_pool_is_read_from_the_command_line(argv, pool):
    assert pool_from_argv(argv) == pool
