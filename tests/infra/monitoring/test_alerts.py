"""An alert end to end: a web instance stopped on the first web host is reported by Prometheus
and reaches Alertmanager as SynSpiritWebInstanceDown; started again, the alert resolves in both.

With the role's defaults (scrape and evaluation every 10 s, `for: 1m`) the alert fires about
70-80 s after the stop and resolves within about 20 s of the start (the whole test: 142 s
on the 2-core machine at a load average of 30)."""
from conftest import wait_until, web_ports
from monitoring_api import alertmanager_of, prometheus_of

ALERT = "SynSpiritWebInstanceDown"


def test_stopped_web_instance_fires_an_alert_that_resolves_when_it_is_back(inventory, lab_host):
    """systemctl stop synspirit-web@PORT -> the alert fires in Prometheus and Alertmanager;
    systemctl start -> it is resolved in both."""
    web_name = inventory["groups"]["web"][0]
    web = lab_host(web_name)
    port = web_ports(web)[0]
    instance = f"{inventory['addresses'][web_name]}:{port}"
    prometheus, alertmanager = prometheus_of(inventory), alertmanager_of(inventory)

    def in_prometheus(state: str):
        return [a for a in prometheus.alerts() if a["labels"]["alertname"] == ALERT
                and a["labels"]["instance"] == instance and a["state"] == state]

    def in_alertmanager():
        return [a for a in alertmanager.alerts() if a["labels"]["alertname"] == ALERT
                and a["labels"]["instance"] == instance]

    assert not in_prometheus("firing") and not in_alertmanager(), "the instance is already down"
    web.run_expect([0], f"systemctl stop synspirit-web@{port}")
    try:
        assert wait_until(lambda: in_prometheus("pending"), timeout=40, interval=2), prometheus.alerts()
        firing = wait_until(lambda: in_prometheus("firing"), timeout=120, interval=2)
        assert firing, prometheus.alerts()
        assert firing[0]["labels"]["host"] == web_name
        assert firing[0]["labels"]["severity"] == "critical"
        received = wait_until(in_alertmanager, timeout=30, interval=2)
        assert received and received[0]["status"]["state"] == "active", alertmanager.alerts()
    finally:
        web.run_expect([0], f"systemctl start synspirit-web@{port}")

    assert wait_until(lambda: not in_prometheus("firing") and not in_prometheus("pending"),
                      timeout=60, interval=2), prometheus.alerts()
    assert wait_until(lambda: not in_alertmanager(), timeout=30, interval=2), alertmanager.alerts()
