"""Scale-out: a web host and a worker host added to the inventory, site.yml run again. The new
web host joins nginx's upstreams and serves traffic; the new worker host is in no upstream and,
with the workers of every web host stopped, does the background work alone. The new web host
only serves (synspirit_run_workers: false in its host_vars, as an operator would set it).
Slow (boots two hosts and converges them): runs with `lab.sh test --scale-out`
(LAB_SCALE_OUT=1); the lab keeps the extra hosts afterwards."""
import os
import subprocess

import pytest
from conftest import INVENTORY, REPO, Api, connect, wait_until, web_ports

from testkit.lab import read_inventory

pytestmark = pytest.mark.skipif(os.environ.get("LAB_SCALE_OUT") != "1",
                                reason="scale-out is opt-in: tests/lab/lab.sh test --scale-out")

WORKER_METRICS = {"io": 9810, "cpu": 9811}  # group_vars/all/deployment.yml
ARTICLE = "# Scaled out\n\nRendered by *the worker host*."


@pytest.fixture(scope="module")
def grown():
    """The lab after `LAB_WEB_HOSTS=N+1 LAB_WORKER_HOSTS=M+1 lab.sh up`, the new web host set to
    serve only: (inventory before, inventory after, new web host, new worker host)."""
    before = read_inventory()
    webs = len(before["groups"]["web"]) + 1
    workers = len(before["groups"].get("worker", [])) + 1
    host_vars = INVENTORY.parent / "host_vars"
    host_vars.mkdir(exist_ok=True)
    (host_vars / f"web{webs}.yml").write_text(
        "---\n# A web host that only serves (tests/infra/scale): the worker hosts do the rest.\n"
        "synspirit_run_workers: false\n")
    subprocess.run([str(REPO / "tests/lab/lab.sh"), "up"], check=True, timeout=2400,
                   env={**os.environ, "LAB_WEB_HOSTS": str(webs), "LAB_WORKER_HOSTS": str(workers)})
    after = read_inventory()
    [new_web] = set(after["groups"]["web"]) - set(before["groups"]["web"])
    [new_worker] = set(after["groups"]["worker"]) - set(before["groups"].get("worker", []))
    return before, after, new_web, new_worker


def test_new_web_host_is_in_every_upstream_and_the_worker_host_in_none(grown):
    """nginx on lb1 lists the new web host's instances (one per core), none of the worker host."""
    _, after, new_web, new_worker = grown
    address = after["addresses"][new_web]
    lb = connect(after["addresses"][after["groups"]["lb"][0]])
    config = lb.check_output("nginx -T 2>/dev/null")
    for port in web_ports(connect(address)):
        assert f"server {address}:{port}" in config, port
    assert f"server {after['addresses'][new_worker]}:" not in config


def test_new_web_host_alone_serves_the_site(grown):
    """With every other web instance stopped, the site still works: the new host serves it."""
    before, after, _, _ = grown
    user = Api().register()
    post_id = user.create_post()
    others = [connect(after["addresses"][h]) for h in before["groups"]["web"]]
    try:
        for web in others:
            web.run_expect([0], "systemctl stop 'synspirit-web@*.service'")
        r = answer(user, "GET", f"/api/posts/{post_id}")
        assert r.status_code == 200
        like = {"action": "like", "target_type": "post", "target_id": post_id}
        r = answer(user, "POST", "/api/actions", json=like)
        assert r.status_code == 200, r.text
        assert wait_until(
            lambda: answer(user, "GET", f"/api/posts/{post_id}").json()["counts"]["likes"] == 1, 5)
    finally:
        for web in others:
            restart_all(web)


def test_worker_host_alone_does_the_background_work(grown):
    """With the workers of every web host stopped (the new one runs none at all), an article is
    rendered and a count converges: the worker host's io and cpu workers ran those tasks."""
    _, after, new_web, new_worker = grown
    webs = [connect(after["addresses"][h]) for h in after["groups"]["web"]]
    worker = connect(after["addresses"][new_worker])
    assert not connect(after["addresses"][new_web]).service("synspirit-worker@io").is_running
    user, reader = Api().register(), Api().register()
    before = task_runs(worker, after["addresses"][new_worker])
    try:
        for web in webs:
            web.run_expect([0], "systemctl stop 'synspirit-worker@*.service'")
        r = answer(user, "POST", "/api/articles", json={"title": "Scaled out", "content": ARTICLE})
        assert r.status_code == 201, r.text
        article_id = r.json()["id"]
        like = {"action": "like", "target_type": "article", "target_id": article_id}
        assert answer(reader, "POST", "/api/actions", json=like).status_code == 200

        def done():
            body = answer(user, "GET", f"/api/articles/{article_id}").json()
            return ("<em>the worker host</em>" in (body.get("content_html") or "")
                    and body["counts"]["likes"] == 1)

        assert wait_until(done, 60, 1), answer(user, "GET", f"/api/articles/{article_id}").json()
        ran = task_runs(worker, after["addresses"][new_worker])
        assert ran.get("app.tasks.render_article", 0) > before.get("app.tasks.render_article", 0)
        recount = "app.tasks.update_article_counts"  # a like's recount (dispatch.recount)
        assert ran.get(recount, 0) > before.get(recount, 0)
    finally:
        for web in webs:
            restart_all(web)


def answer(user: Api, method: str, path: str, **kw):
    """nginx tries a bounded number of instances per request (and writes on one only) and marks
    an instance down after max_fails: until then a request may get 502, and the client tries
    again."""
    for _ in range(60):
        r = user.request(method, path, **kw)
        if r.status_code != 502:
            return r
    return r


def restart_all(web) -> None:
    """Every service the inventory gives the host, running again (stopped instances do not come
    back with `systemctl start synspirit.target` when the target is already active)."""
    web.run_expect([0], "systemctl start synspirit.target")
    wanted = web.check_output("ls /etc/systemd/system/synspirit.target.wants/").split()
    web.run_expect([0], "systemctl start " + " ".join(wanted))


def task_runs(host, address: str) -> dict[str, float]:
    """Task runs that succeeded, by task name, summed over the host's worker instances (their
    /metrics, read on the host itself)."""
    runs: dict[str, float] = {}
    for port in WORKER_METRICS.values():
        text = host.check_output(
            "python3 -c %s %s",
            "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())",
            f"http://{address}:{port}/metrics")
        for line in text.splitlines():
            if line.startswith("synspirit_celery_task_succeeded_total{"):
                task = line.split('task="', 1)[1].split('"', 1)[0]
                runs[task] = runs.get(task, 0) + float(line.rsplit(" ", 1)[1])
    return runs
