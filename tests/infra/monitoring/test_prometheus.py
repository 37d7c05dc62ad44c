"""The monitoring host: Prometheus and Alertmanager run on the private address, their rules
and configuration pass promtool/amtool, and every target the inventory implies is scraped and
up, with the metrics operators rely on (services up, Celery queues and tasks, HTTP requests)."""
import base64
from pathlib import Path

import pytest
from conftest import address_of, listening_addresses, wait_until, web_ports, worker_hosts
from monitoring_api import ALERTMANAGER_PORT, PROMETHEUS_PORT, deployment, prometheus_of

testinfra_hosts = ["ansible://monitoring"]

RULES = "/etc/prometheus/rules/synspirit.yml"
RULES_TESTS = Path(__file__).with_name("rules_test.yml")


@pytest.mark.parametrize("unit", ["prometheus", "prometheus-alertmanager"])
def test_service_runs_and_is_enabled(host, unit):
    """Prometheus and Alertmanager run now and start at boot."""
    service = host.service(unit)
    assert service.is_running and service.is_enabled


@pytest.mark.parametrize("port", [PROMETHEUS_PORT, ALERTMANAGER_PORT])
def test_listens_on_the_private_address_only(host, port):
    """Prometheus and Alertmanager are bound to the private address, never to all addresses."""
    assert listening_addresses(host, port) == {address_of(host)}


def test_alertmanager_opens_no_cluster_port(host):
    """Alertmanager's gossip port (9094, on 0.0.0.0 by default) is off."""
    assert not listening_addresses(host, 9094)


def test_alert_rules_pass_promtool(host):
    """promtool check rules accepts the installed rules."""
    out = host.run_expect([0], f"promtool check rules {RULES}").stdout
    assert "SUCCESS" in out


def test_alert_rules_fire_on_the_series_they_watch(host):
    """promtool test rules: the rules fire (and stay quiet) on synthetic series (rules_test.yml)."""
    encoded = base64.b64encode(RULES_TESTS.read_bytes()).decode()
    host.run_expect([0], f"echo {encoded} | base64 -d > /tmp/synspirit-rules-test.yml")
    result = host.run("cd /tmp && promtool test rules /tmp/synspirit-rules-test.yml")
    assert result.rc == 0, result.stdout + result.stderr


def test_alertmanager_configuration_passes_amtool(host):
    """amtool check-config accepts the installed Alertmanager configuration."""
    host.run_expect([0], "amtool check-config /etc/prometheus/alertmanager.yml")


def expected_targets(inventory, lab_host) -> dict[str, set[str]]:
    """job -> the addresses:ports the inventory implies."""
    d = deployment()
    exporters, workers = d["synspirit_exporter_ports"], d["synspirit_worker_metrics_ports"]
    groups, address = inventory["groups"], inventory["addresses"]
    mon = address[groups["monitoring"][0]]
    hosts = sorted({h for g in groups.values() for h in g})
    return {
        "prometheus": {f"{mon}:{PROMETHEUS_PORT}"},
        "alertmanager": {f"{mon}:{ALERTMANAGER_PORT}"},
        "node": {f"{address[h]}:{exporters['node']}" for h in hosts},
        "postgresql": {f"{address[h]}:{exporters['postgresql']}" for h in groups["postgresql"]},
        "patroni": {f"{address[h]}:{d['synspirit_patroni_port']}" for h in groups["postgresql"]},
        "etcd": {f"{address[h]}:{d['synspirit_etcd_ports']['metrics']}" for h in groups.get("etcd", [])},
        "redis": {f"{address[h]}:{exporters['redis']}" for h in groups["redis"]},
        "redis-sentinel": {f"{address[h]}:{exporters['redis']}" for h in groups["redis"]},
        "nginx": {f"{address[h]}:{exporters['nginx']}" for h in groups["lb"]},
        "synspirit-web": {f"{address[h]}:{p}" for h in groups["web"] for p in web_ports(lab_host(h))},
        "synspirit-worker": {f"{address[h]}:{p}" for h in worker_hosts(inventory)
                             for p in workers.values()},
    }


def test_every_target_of_the_inventory_is_scraped_and_up(inventory, lab_host):
    """Each exporter, web instance and worker instance of the inventory is a target, and up."""
    prometheus = prometheus_of(inventory)
    expected = expected_targets(inventory, lab_host)

    def scraped():
        found: dict[str, set[str]] = {}
        down = []
        for target in prometheus.targets():
            job, instance = target["labels"]["job"], target["labels"]["instance"]
            found.setdefault(job, set()).add(instance)
            if target["health"] != "up":
                down.append((job, instance, target["health"], target["lastError"]))
        return (found, down) if found == expected and not down else None

    # A target that was just (re)started is "unknown" until its first scrape.
    assert wait_until(scraped, timeout=60, interval=2), (expected, [
        (t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"])
        for t in prometheus.targets()])


@pytest.mark.parametrize("expr", ["pg_up", "redis_up", "nginx_up"])
def test_exporters_reach_their_service(inventory, expr):
    """The PostgreSQL, Redis and nginx exporters log in to their service (its *_up is 1)."""
    result = prometheus_of(inventory).query(expr)
    assert result and all(r["value"][1] == "1" for r in result), result


def test_queue_lengths_of_both_celery_queues_are_recorded(inventory):
    """redis_key_size has a series for the io and the cpu queue (0 when empty)."""
    prometheus = prometheus_of(inventory)
    found = wait_until(lambda: {r["metric"]["key"]: r["value"][1]
                                for r in prometheus.query('redis_key_size{key=~"io|cpu"}')}
                       .keys() >= {"io", "cpu"}, timeout=30, interval=2)
    assert found, prometheus.query("redis_key_size")


def test_workers_report_the_tasks_they_run(inventory):
    """The io workers count the view flush that beat sends every 10 s, with its run time."""
    prometheus = prometheus_of(inventory)
    task = 'task="app.tasks.flush_view_counts"'

    def counted():
        ok = prometheus.query(f'sum(synspirit_celery_task_succeeded_total{{{task}}}) > 0')
        timed = prometheus.query(f'sum(synspirit_celery_task_runtime_seconds_count{{{task}}}) > 0')
        return ok and timed

    assert wait_until(counted, timeout=60, interval=2), prometheus.query(
        '{__name__=~"synspirit_celery_.*"}')


def test_web_instances_report_their_requests(inventory):
    """Every web instance exposes its request counters to Prometheus."""
    prometheus = prometheus_of(inventory)
    instances = {t["labels"]["instance"] for t in prometheus.targets()
                 if t["labels"]["job"] == "synspirit-web"}

    def reported():
        found = {r["metric"]["instance"]
                 for r in prometheus.query('synspirit_http_requests_total{job="synspirit-web"}')}
        return instances and found >= instances

    assert wait_until(reported, timeout=30, interval=2), instances


def test_every_sentinel_reports_a_healthy_master(inventory):
    """Each redis host's Sentinel is scraped and sees the master healthy (the no-master alert's series)."""
    prometheus = prometheus_of(inventory)

    def reported():
        result = prometheus.query('redis_sentinel_master_status{master_name="synspirit"}')
        hosts = {r["metric"]["host"] for r in result if r["value"][1] == "1"}
        return hosts == set(inventory["groups"]["redis"])

    assert wait_until(reported, timeout=60, interval=2), prometheus.query("redis_sentinel_master_status")


def test_exactly_one_lb_host_reports_holding_the_floating_address(inventory):
    """keepalived's report through the node exporter: one lb host holds the address."""
    prometheus = prometheus_of(inventory)

    def reported():
        result = prometheus.query("synspirit_floating_address_held")
        return ({r["metric"]["host"] for r in result} == set(inventory["groups"]["lb"])
                and sum(float(r["value"][1]) for r in result) == 1)

    assert wait_until(reported, timeout=60, interval=2), prometheus.query("synspirit_floating_address_held")
