"""Helpers of the monitoring checks: Prometheus and Alertmanager of the first monitoring host,
asked over HTTP from the controller (the lab network reaches their private address), and the
ports the deployment gives the exporters and workers (group_vars/all/deployment.yml).
(Not a conftest.py: a second module named conftest would shadow tests/infra/conftest.py.)"""
from __future__ import annotations

import time

import yaml
from conftest import REPO, lab_session

PROMETHEUS_PORT = 9090    # roles/monitoring defaults: monitoring_prometheus_port
ALERTMANAGER_PORT = 9093  # monitoring_alertmanager_port


class PromApi:
    """A small client of Prometheus' HTTP API (/api/v1)."""

    def __init__(self, base: str):
        self.base = base
        self.session = lab_session()

    def get(self, path: str, **params) -> dict:
        r = self.session.get(self.base + path, params=params, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector: [{"metric": {...}, "value": [ts, "1"]}, ...]."""
        return self.get("/api/v1/query", query=expr)["result"]

    def targets(self) -> list[dict]:
        return self.get("/api/v1/targets", state="active")["activeTargets"]

    def alerts(self) -> list[dict]:
        return self.get("/api/v1/alerts")["alerts"]


class AlertmanagerApi:
    """A small client of Alertmanager's HTTP API (/api/v2)."""

    def __init__(self, base: str):
        self.base = base
        self.session = lab_session()

    def alerts(self) -> list[dict]:
        """The alerts Alertmanager holds now (active, silenced or inhibited; not resolved)."""
        r = self.session.get(self.base + "/api/v2/alerts", timeout=10)
        r.raise_for_status()
        return r.json()


def monitoring_address(inventory: dict) -> str:
    return inventory["addresses"][inventory["groups"]["monitoring"][0]]


def prometheus_of(inventory: dict) -> PromApi:
    """Prometheus of the monitoring host; waits until it answers (it may have just started)."""
    api = PromApi(f"http://{monitoring_address(inventory)}:{PROMETHEUS_PORT}")
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
    return AlertmanagerApi(f"http://{monitoring_address(inventory)}:{ALERTMANAGER_PORT}")


def deployment() -> dict:
    """The deployment-wide variables (ports of the exporters and of the workers' metrics)."""
    return yaml.safe_load((REPO / "ansible/group_vars/all/deployment.yml").read_text())
