"""The web page's files (backend/app/web/), without a browser: the asset versions index.html
names, the CSP the app sends equals nginx's, nothing that CSP forbids, the one place HTML from
the server enters the page, the vendored Socket.IO client, the wheel's package data, and the
page paths Flask and nginx serve. The browser tests: tests/backend/browser/."""
from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "backend" / "app" / "web"
SITE = WEB / "site"
INDEX = (SITE / "index.html").read_text()
APP_JS = (SITE / "static" / "app.js").read_text()


def test_index_names_every_asset_with_its_current_version():
    from app.web import stamp

    assert stamp(INDEX) == INDEX, (
        "an asset changed: run `cd backend && ../.venv/bin/python -m app.web.stamp`")
    named = set(re.findall(r'/static/([\w.-]+)\?v=', INDEX))
    assert named == {p.name for p in (SITE / "static").iterdir()}


def test_the_app_sends_the_csp_nginx_sends():
    from app.web import CONTENT_SECURITY_POLICY

    defaults = yaml.safe_load((ROOT / "ansible/roles/nginx/defaults/main.yml").read_text())
    assert CONTENT_SECURITY_POLICY == defaults["nginx_content_security_policy"]


def test_no_inline_script_or_handler():
    for tag in re.findall(r"<script\b[^>]*>", INDEX):
        assert re.search(r'\bsrc="/static/', tag), tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", INDEX), "an inline script"
    assert not re.search(r"\son[a-z]+\s*=", INDEX), "an inline event handler"
    assert "javascript:" not in INDEX + APP_JS
    for forbidden in ("eval(", "new Function", "setAttribute(\"on", "document.write",
                      "insertAdjacentHTML", "outerHTML", ".style.cssText"):
        assert forbidden not in APP_JS, forbidden


def test_html_from_the_server_enters_the_page_in_one_place_only():
    uses = [line.strip() for line in APP_JS.splitlines() if "innerHTML" in line
            and not line.strip().startswith("//")]
    assert uses == ["body.innerHTML = it.content_html;"]


def test_the_vendored_socketio_client_is_the_recorded_release():
    client = (SITE / "static" / "socket.io.min.js").read_bytes()
    readme = (WEB / "README.md").read_text()
    assert hashlib.sha256(client).hexdigest() in readme
    version = re.search(rb"Socket\.IO v(\d+\.\d+\.\d+)", client).group(1).decode()
    assert f"socket.io-client {version}" in readme
    assert version.startswith("4.")  # protocol v5, python-socketio 5 (docs/api.md)


def test_the_wheel_carries_every_file_of_the_site():
    pyproject = tomllib.loads((ROOT / "backend" / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["app"]
    app_dir = ROOT / "backend" / "app"
    for path in SITE.rglob("*"):
        if path.is_file():
            rel = path.relative_to(app_dir).as_posix()
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/")
                       for p in patterns), rel


def test_flask_and_nginx_serve_the_same_page_paths():
    from app.web import PAGE_PATHS

    conf = (ROOT / "nginx" / "synspirit.conf.j2").read_text()
    regex = re.search(r'location ~ "(\^/[^"]+)" \{\s*root \{\{ nginx_web_root \}\};', conf)
    assert regex and "location = / {\n        root {{ nginx_web_root }};" in conf
    pattern = re.compile(regex.group(1))
    for path in PAGE_PATHS:
        if path != "/":
            assert pattern.match(path.replace("<int:item_id>", "12")), path
    for path in ("/api/posts/12", "/posts/12/comments", "/socket.io/", "/metrics", "/healthz",
                 "/posts/abc"):
        assert not pattern.match(path), path
    # app.js routes the same paths (its ROUTES table).
    js_routes = [re.compile("^" + r.replace("\\/", "/") + "$")
                 for r in re.findall(r"\[/\^(\\/[^$]*)\$/, render", APP_JS)]
    for path in PAGE_PATHS:
        assert any(r.match(path.replace("<int:item_id>", "12")) for r in js_routes), path
