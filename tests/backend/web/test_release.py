"""The release a web process runs (SYNSPIRIT_RELEASE, written by the deployment into web.env):
in GET /healthz and as synspirit_build_info on /metrics."""
import re


def test_healthz_and_metrics_name_the_release(make_app, monkeypatch):
    monkeypatch.setenv("SYNSPIRIT_RELEASE", "8403969-dirty")
    client = make_app().test_client()
    body = client.get("/healthz").get_json()
    assert body == {"status": "ok", "release": "8403969-dirty"}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'^synspirit_build_info\{release="8403969-dirty"\} 1\.0$', metrics, re.M), metrics
    # One series only: the release of this app, not of an app made before it in the process.
    assert len(re.findall(r"^synspirit_build_info\{", metrics, re.M)) == 1


def test_release_is_unknown_when_the_deployment_sets_none(make_app, monkeypatch):
    monkeypatch.delenv("SYNSPIRIT_RELEASE", raising=False)
    client = make_app().test_client()
    assert client.get("/healthz").get_json()["release"] == "unknown"
    assert 'synspirit_build_info{release="unknown"} 1.0' in client.get("/metrics").get_data(as_text=True)
