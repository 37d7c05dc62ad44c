"""The web page: one HTML page for every page path (the browser routes by path) and its static
files, served from site/ as they are (no build step; README.md here).

In a deployment nginx serves the same files from disk (the nginx role copies site/ out of the
synspirit wheel): this blueprint is what ./start.sh and the tests use, with the same headers.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Blueprint, Response, abort, request, send_from_directory

SITE = Path(__file__).parent / "site"
STATIC = SITE / "static"

# The page paths the browser routes itself (app.js ROUTES); nginx/synspirit.conf.j2 lists the
# same ones.
PAGE_PATHS = ("/", "/posts/<int:item_id>", "/articles/<int:item_id>", "/signin", "/signup",
              "/write")

# The Content-Security-Policy nginx sends (ansible/roles/nginx/defaults/main.yml,
# nginx_content_security_policy; tests/backend/web/test_page.py compares them), sent here too
# so that the page is checked against it without nginx.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
# A static file asked with ?v=<its version> never changes: a year, immutable. Without it: kept,
# but asked again each time (ETag).
YEAR = 365 * 86400
VERSIONED = f"public, max-age={YEAR}, immutable"

bp = Blueprint("web", __name__)


def version(path: Path) -> str:
    """The version an asset URL carries: the first 12 hex digits of the file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


ASSET_URL = re.compile(r'(/static/([A-Za-z0-9_.-]+))\?v=([0-9a-f]*)')


def stamp(html: str) -> str:
    """index.html with every /static/NAME?v=... carrying NAME's current version."""
    return ASSET_URL.sub(lambda m: f"{m.group(1)}?v={version(STATIC / m.group(2))}", html)


def _secure(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


def page(item_id: int | None = None):
    resp = send_from_directory(SITE, "index.html", max_age=0)
    resp.headers["Cache-Control"] = "no-cache"
    return _secure(resp)


for _path in PAGE_PATHS:
    bp.add_url_rule(_path, view_func=page, methods=["GET"],
                    endpoint="page" if _path == "/" else "page_" + _path.split("/")[1])


@bp.get("/static/<path:filename>")
def static(filename: str):
    if filename.startswith(".") or "/" in filename:
        abort(404)
    resp = send_from_directory(STATIC, filename, max_age=0)
    resp.headers["Cache-Control"] = VERSIONED if request.args.get("v") else "no-cache"
    return _secure(resp)
