"""Article Markdown -> sanitized HTML, excerpt and reading time (CPU-bound: the cpu queue)."""
from __future__ import annotations

import html as htmllib
import math
import re

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "img", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"},
                      "td": {"align"}, "th": {"align"}}
EXCERPT_CHARS = 200
WORDS_PER_MINUTE = 230  # Latin-script prose
CJK_CHARS_PER_MINUTE = 400  # Chinese / Japanese prose, counted by character
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def render_markdown(source: str) -> str:
    html = _md.render(source)
    return nh3.clean(
        html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"}, link_rel="nofollow noopener noreferrer",
    )


def plain_text(html: str) -> str:
    return " ".join(htmllib.unescape(nh3.clean(html, tags=set())).split())


def excerpt(text: str) -> str:
    if len(text) <= EXCERPT_CHARS:
        return text
    head = text[:EXCERPT_CHARS]
    cut = head.rsplit(" ", 1)[0] if " " in head else head  # whole words where there are words
    return cut.rstrip() + "…"


def reading_minutes(text: str) -> int:
    cjk = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    return max(1, math.ceil(words / WORDS_PER_MINUTE + cjk / CJK_CHARS_PER_MINUTE))


def render_article(source: str) -> dict:
    html = render_markdown(source)
    text = plain_text(html)
    # The excerpt is the text the reader sees, HTML-escaped (cut first, so no entity is cut):
    # markup the author wrote as text (`<img onerror=...>`) shows as text wherever a client
    # inserts the excerpt, as HTML like content_html or through an escaping template.
    return {"content_html": html, "excerpt": htmllib.escape(excerpt(text)),
            "reading_minutes": reading_minutes(text)}
