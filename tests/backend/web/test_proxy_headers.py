"""The app trusts exactly the forwarded headers that nginx sets. Behind nginx
(TRUSTED_PROXY_COUNT=1) werkzeug's ProxyFix takes the client address, scheme and host from
X-Forwarded-*; a header it trusts but nginx does not set would come straight from the client
(X-Forwarded-Host did: the host Socket.IO's same-origin check compares Origin with)."""
from __future__ import annotations

import re
from pathlib import Path

import jinja2
from werkzeug.middleware.proxy_fix import ProxyFix

TEMPLATE = Path(__file__).resolve().parents[3] / "nginx" / "synspirit.conf.j2"
PROXY_FIX_HEADERS = {"x_for": "X-Forwarded-For", "x_proto": "X-Forwarded-Proto",
                     "x_host": "X-Forwarded-Host", "x_port": "X-Forwarded-Port",
                     "x_prefix": "X-Forwarded-Prefix"}


def _rendered() -> str:
    # As Ansible's template module renders it (trim_blocks), with sample inventory values.
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.ChainableUndefined)
    env.filters["comment"] = lambda text: f"# {text}"
    return env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="managed", __nginx_upstream_servers=["10.0.0.11:8000"],
        nginx_metrics_allow=["10.0.0.30"])


def _proxied_locations(config: str) -> dict[str, set[str]]:
    """location -> the X-Forwarded-* headers it sets, for every location that proxies."""
    found = {}
    config = re.sub(r"#[^\n]*", "", config)
    for name, body in re.findall(r"^\s*location\s+([^{]+?)\s*\{(.*?)\n    \}", config,
                                 re.S | re.M):
        if "proxy_pass" in body:
            found[name] = set(re.findall(r"proxy_set_header\s+(X-Forwarded-[\w-]+)\s", body))
    return found


def _trusted(app) -> set[str]:
    layer = app.wsgi_app
    while not isinstance(layer, ProxyFix):
        layer = getattr(layer, "app", None)
        assert layer is not None, "no ProxyFix in front of the app"
    return {header for attr, header in PROXY_FIX_HEADERS.items() if getattr(layer, attr)}


def test_every_proxied_location_sets_exactly_what_the_app_trusts(make_app):
    trusted = _trusted(make_app(TRUSTED_PROXY_COUNT=1))
    assert "X-Forwarded-For" in trusted
    locations = _proxied_locations(_rendered())
    assert {"/", "/socket.io/", "/api/auth/", "= /metrics", "= /healthz"} <= set(locations)
    for name, headers in locations.items():
        assert headers == trusted, name
