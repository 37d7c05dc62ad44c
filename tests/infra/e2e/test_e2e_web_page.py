"""The web page through the lab's load balancer: nginx serves the page and its files from disk
(/var/www/synspirit on each lb host, taken out of the synspirit wheel) with caching headers and
the server's security headers, the API and Socket.IO paths still reach the app, and in headless
Chromium on the controller one person writes a post that another likes, the count moving on the
first one's page without a reload (websocket through nginx, under nginx's CSP).
The backend suite checks the same nginx configuration locally:
tests/backend/browser/test_nginx_page.py."""
from __future__ import annotations

import re
import uuid

import pytest
from conftest import LB_URL, REPO, lab_session

from testkit import browser as chromium

testinfra_hosts = ["ansible://lb"]

SITE = REPO / "backend" / "app" / "web" / "site"


def test_the_web_page_is_on_every_load_balancer(host):
    index = host.file("/var/www/synspirit/index.html")
    assert index.exists and index.user == "root" and index.mode == 0o644
    assert index.content == (SITE / "index.html").read_bytes()
    for name in ("app.js", "app.css", "socket.io.min.js", "favicon.svg"):
        assert host.file(f"/var/www/synspirit/static/{name}").exists, name


def test_nginx_serves_the_page_with_its_headers():
    http = lab_session()
    index = (SITE / "index.html").read_bytes()
    for path in ("/", "/posts/1", "/articles/1", "/signin", "/signup", "/write"):
        resp = http.get(LB_URL + path, timeout=10)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Type"].startswith("text/html"), path
        assert resp.content == index, path
        assert resp.headers["Cache-Control"] == "no-cache", path
        assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'self'
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert "Strict-Transport-Security" in resp.headers, path
    assets = re.findall(r'(/static/[\w.-]+)\?v=([0-9a-f]{12})', index.decode())
    assert assets
    for asset, version in assets:
        resp = http.get(f"{LB_URL}{asset}?v={version}", timeout=10)
        assert resp.status_code == 200, asset
        assert resp.headers["Cache-Control"] == "max-age=31536000", asset
        assert resp.headers["X-Content-Type-Options"] == "nosniff", asset
        assert "Content-Security-Policy" in resp.headers, asset
    missing = http.get(LB_URL + "/api/nothing-here", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_a_like_moves_the_count_on_another_browser_through_nginx():
    if not chromium.available():
        pytest.skip("chromium / chromium-driver missing on the controller: run make setup")
    from testkit.browser import live, mark_page, not_reloaded, signup, text_of, wait, write

    a = chromium.start_chromium(LB_URL, self_signed=True)
    b = chromium.start_chromium(LB_URL, self_signed=True)
    try:
        signup(a, "lab")
        title = f"实验室 lab {uuid.uuid4().hex[:6]}"
        post_id = write(a, title, "Through the lab's load balancer.")
        live(a)
        mark_page(a)
        signup(b, "lab")
        b.get(f"{LB_URL}/posts/{post_id}")
        wait(b, lambda d: text_of(d, "main h1") == title)
        b.find_element("id", "like-button").click()
        wait(a, lambda d: text_of(d, f'[data-count="post:{post_id}:likes"]') == "1")
        assert not_reloaded(a)
        problems = chromium.console_problems(a) + chromium.console_problems(b)
        assert not problems, problems
    finally:
        chromium.quit_chromium(a)
        chromium.quit_chromium(b)
