"""The web page behind the deployment's own nginx configuration (nginx/synspirit.conf.j2,
rendered with the nginx role's defaults), run here by a private nginx on loopback ports in
front of the suite's gunicorn: the files come from disk with their caching headers and the
server's security headers, the API and Socket.IO paths still reach the app, and the page works
in Chromium under that CSP over TLS (websocket through nginx). The lab checks the same on real
hosts: tests/infra/e2e/test_e2e_web_page.py."""
from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import jinja2
import pytest
import requests
import urllib3
import yaml
from selenium.webdriver.common.by import By

from testkit.browser import live, signup, text_of, wait, write
from testkit.processes import free_port, web_command

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "nginx" / "synspirit.conf.j2"
DEFAULTS = ROOT / "ansible" / "roles" / "nginx" / "defaults" / "main.yml"
SITE = ROOT / "backend" / "app" / "web" / "site"


def _render(upstream: str, http_port: int, https_port: int, stub_port: int, tmp: Path,
            cert: Path, key: Path) -> str:
    values = yaml.safe_load(DEFAULTS.read_text())
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: f"# {text}"
    values.update(ansible_managed="managed", __nginx_upstream_servers=[upstream],
                  __nginx_tls_certificate=str(cert), __nginx_tls_certificate_key=str(key),
                  nginx_stub_status_port=stub_port, nginx_web_root=str(SITE))
    text = env.from_string(TEMPLATE.read_text()).render(**values)
    text = re.sub(r"^\s*listen \[::\].*\n", "", text, flags=re.M)
    text = text.replace("listen 80 ", f"listen 127.0.0.1:{http_port} ")
    text = text.replace("listen 443 ", f"listen 127.0.0.1:{https_port} ")
    return text.replace("/var/log/nginx/access.log", str(tmp / "access.log"))


def _wait_for(url: str, proc, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-3000:] if log.exists() else "exited"
        try:
            if requests.get(url, verify=False, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def nginx_site(stack_env, procs, tmp_path_factory):
    """https://127.0.0.1:PORT: a private nginx with the deployment's configuration, in front of
    a gunicorn of its own set as in production behind nginx (TRUSTED_PROXY_COUNT=1). Its
    SOCKETIO_CORS_ORIGINS names the site: nginx passes the Host without the port ($host), and
    only here is the port not 443."""
    tmp = tmp_path_factory.mktemp("nginx")
    http_port, https_port, stub_port, app_port = free_port(), free_port(), free_port(), free_port()
    base = f"https://127.0.0.1:{https_port}"
    app = procs.spawn("gunicorn-nginx", web_command(app_port), {
        **stack_env, "TRUSTED_PROXY_COUNT": "1", "SOCKETIO_CORS_ORIGINS": base})
    _wait_for(f"http://127.0.0.1:{app_port}/healthz", app, procs.log_of("gunicorn-nginx"))
    cert, key = tmp / "site.crt", tmp / "site.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    upstream = f"127.0.0.1:{app_port}"
    (tmp / "synspirit.conf").write_text(
        _render(upstream, http_port, https_port, stub_port, tmp, cert, key))
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir()
    (tmp / "nginx.conf").write_text(f"""
daemon off;
user root root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    access_log {tmp}/access.log;
    include {tmp}/synspirit.conf;
}}
""")
    checked = subprocess.run(["nginx", "-t", "-q", "-c", str(tmp / "nginx.conf"), "-e",
                              str(tmp / "error.log")], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    proc = procs.spawn("nginx-page", ["nginx", "-c", str(tmp / "nginx.conf"), "-e",
                                      str(tmp / "error.log")], cwd=tmp)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    _wait_for(base + "/healthz", proc, tmp / "error.log")
    try:
        yield base
    finally:
        procs.stop("nginx-page", "gunicorn-nginx")


def get(url: str) -> requests.Response:
    return requests.get(url, verify=False, timeout=10)


def test_nginx_serves_the_page_and_its_files_with_caching_and_security_headers(nginx_site):
    csp = yaml.safe_load(DEFAULTS.read_text())["nginx_content_security_policy"]
    index = (SITE / "index.html").read_bytes()
    for path in ("/", "/posts/12", "/articles/3", "/signin", "/signup", "/write"):
        resp = get(nginx_site + path)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Type"].startswith("text/html"), path
        assert resp.content == index, path
        assert resp.headers["Cache-Control"] == "no-cache", path
        assert resp.headers["Content-Security-Policy"] == csp, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert "Strict-Transport-Security" in resp.headers, path
    assets = re.findall(r'(/static/[\w.-]+)\?v=([0-9a-f]{12})', index.decode())
    assert len(assets) == 4
    for asset, version in assets:
        resp = get(f"{nginx_site}{asset}?v={version}")
        assert resp.status_code == 200, asset
        assert resp.content == (SITE / asset.lstrip("/")).read_bytes(), asset
        assert resp.headers["Cache-Control"] == "max-age=31536000", asset
        assert resp.headers["Content-Security-Policy"] == csp, asset
        assert resp.headers["X-Content-Type-Options"] == "nosniff", asset
        unversioned = get(nginx_site + asset)
        assert unversioned.headers["Cache-Control"] == "no-cache", asset
    assert get(nginx_site + "/static/app.js").headers["Content-Type"].startswith(
        ("application/javascript", "text/javascript"))
    assert get(nginx_site + "/static/nothing.js").status_code == 404
    # The API and its JSON errors are the app's, as before.
    missing = get(nginx_site + "/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert get(nginx_site + "/api/posts?per_page=1").status_code == 200
    assert get(nginx_site + "/posts/abc").status_code == 404  # not a page path: the app's 404


def test_the_page_works_through_nginx(nginx_site, browser):
    page = browser(self_signed=True)
    page.base_url = nginx_site
    signup(page, "tls")
    title = f"经由 nginx {uuid.uuid4().hex[:6]}"
    post_id = write(page, title, "Through the load balancer.")
    live(page)  # Socket.IO through nginx's /socket.io/ (websocket upgrade)
    page.find_element(By.CSS_SELECTOR, "a.brand").click()
    wait(page, lambda d: title in [e.text for e in d.find_elements(
        By.CSS_SELECTOR, "#post-feed .card-title")])
    page.get(f"{nginx_site}/posts/{post_id}")
    wait(page, lambda d: text_of(d, "main h1") == title)
    live(page)
    transport = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/socket.io/')).length")
    assert transport >= 1
