"""Scale-out: a web host added to the inventory and site.yml run again joins nginx's upstreams
and serves traffic. Slow (boots a host and converges it): runs with `lab.sh test --scale-out`
(LAB_SCALE_OUT=1); the lab keeps the extra host afterwards."""
import os
import subprocess

import pytest
from conftest import REPO, Api, connect, load_inventory, wait_until, web_ports

pytestmark = pytest.mark.skipif(os.environ.get("LAB_SCALE_OUT") != "1",
                                reason="scale-out is opt-in: tests/lab/lab.sh test --scale-out")


@pytest.fixture(scope="module")
def grown():
    """The lab after `LAB_WEB_HOSTS=N+1 lab.sh up`: (inventory before, inventory after, new host)."""
    before = load_inventory()
    count = len(before["groups"]["web"]) + 1
    subprocess.run([str(REPO / "tests/lab/lab.sh"), "up"], check=True, timeout=1500,
                   env={**os.environ, "LAB_WEB_HOSTS": str(count)})
    after = load_inventory()
    [new] = set(after["groups"]["web"]) - set(before["groups"]["web"])
    return before, after, new


def test_new_web_host_is_in_every_upstream(grown):
    """nginx on lb1 lists the new host's instances (one per core)."""
    _, after, new = grown
    address = after["addresses"][new]
    lb = connect(after["addresses"][after["groups"]["lb"][0]])
    config = lb.check_output("nginx -T 2>/dev/null")
    for port in web_ports(connect(address)):
        assert f"server {address}:{port}" in config, port


def test_new_web_host_alone_serves_the_site(grown):
    """With every other web instance stopped, the site still works: the new host serves it."""
    before, after, new = grown
    user = Api().register()
    post_id = user.create_post()
    others = [connect(after["addresses"][h]) for h in before["groups"]["web"]]
    try:
        for web in others:
            web.run_expect([0], "systemctl stop 'synspirit-web@*.service'")
        # nginx tries a bounded number of instances per request (and writes on one only) and
        # marks an instance down after max_fails: until then a request may get 502, and the
        # client tries again. Any 200 now comes from the new host.
        def answer(method, path, **kw):
            for _ in range(60):
                r = user.request(method, path, **kw)
                if r.status_code != 502:
                    return r
            return r

        assert answer("GET", f"/api/posts/{post_id}").status_code == 200
        like = {"action": "like", "target_type": "post", "target_id": post_id}
        r = answer("POST", "/api/actions", json=like)
        assert r.status_code == 200, r.text
        assert wait_until(
            lambda: answer("GET", f"/api/posts/{post_id}").json()["counts"]["likes"] == 1, 5)
    finally:
        for web in others:
            web.run_expect([0], "systemctl start synspirit.target")
            for port in web_ports(web):
                web.run(f"systemctl start synspirit-web@{port}.service")
