"""Helpers of the monitoring checks: Prometheus and Alertmanager of the first monitoring host,
asked over their HTTP APIs FROM that host (as an operator does through an SSH tunnel: the
firewall lets no other host in), and the ports the deployment gives the exporters and workers
(group_vars/all/deployment.yml).
(Not a conftest.py: a second module named conftest would shadow tests/infra/conftest.py.)"""
from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import yaml
from conftest import REPO, connect

PROMETHEUS_PORT = 9090    # roles/monitoring defaults: monitoring_prometheus_port
ALERTMANAGER_PORT = 9093  # monitoring_alertmanager_port

# Run on the monitoring host with its own python3: GET a URL, print the JSON body.
_GET = r'''
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    sys.stdout.write(response.read().decode())
'''


class HttpApi:
    """GET requests to a service of the monitoring host, made on that host."""

    def __init__(self, host, base: str):
        self.host, self.base = host, base

    def get_json(self, path: str, **params):
        url = self.base + path + (f"?{urlencode(params)}" if params else "")
        return json.loads(self.host.check_output("python3 -c %s %s", _GET, url))


class PromApi(HttpApi):
    """A small client of Prometheus' HTTP API (/api/v1)."""

    def get(self, path: str, **params) -> dict:
        body = self.get_json(path, **params)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector: [{"metric": {...}, "value": [ts, "1"]}, ...]."""
        return self.get("/api/v1/query", query=expr)["result"]

    def targets(self) -> list[dict]:
        return self.get("/api/v1/targets", state="active")["activeTargets"]

    def alerts(self) -> list[dict]:
        return self.get("/api/v1/alerts")["alerts"]


class AlertmanagerApi(HttpApi):
    """A small client of Alertmanager's HTTP API (/api/v2)."""

    def alerts(self) -> list[dict]:
        """The alerts Alertmanager holds now (active, silenced or inhibited; not resolved)."""
        return self.get_json("/api/v2/alerts")


def monitoring_address(inventory: dict) -> str:
    return inventory["addresses"][inventory["groups"]["monitoring"][0]]


def prometheus_of(inventory: dict) -> PromApi:
    """Prometheus of the monitoring host; waits until it answers (it may have just started)."""
    address = monitoring_address(inventory)
    api = PromApi(connect(address), f"http://{address}:{PROMETHEUS_PORT}")
    deadline = time.monotonic() + 60
    while True:
        try:
            api.get("/api/v1/status/buildinfo")
            return api
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def alertmanager_of(inventory: dict) -> AlertmanagerApi:
    address = monitoring_address(inventory)
    return AlertmanagerApi(connect(address), f"http://{address}:{ALERTMANAGER_PORT}")


def deployment() -> dict:
    """The deployment-wide variables (ports of the exporters and of the workers' metrics)."""
    return yaml.safe_load((REPO / "ansible/group_vars/all/deployment.yml").read_text())
