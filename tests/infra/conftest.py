"""Shared fixtures of the lab suite: the lab's inventory, its hosts, and the API through nginx.

Run by `tests/lab/lab.sh test` (make test-lab) against the hosts that `lab.sh up` made; each
folder tests one host role (lb, web, data), e2e/ goes through the load balancer like a user,
converge/ re-runs the playbook, scale/ adds a web host and a worker host.
"""
from __future__ import annotations

import os
import secrets
import time

import pytest
import requests
import testinfra
import urllib3

# REPO and wait_until are imported by the tests from here.
from testkit.lab import INVENTORY, REPO, SSH_KEY, read_inventory, ssh_extra_args, worker_hosts  # noqa: F401
from testkit.waiting import wait_until  # noqa: F401

LB_URL = os.environ.get("LAB_LB_URL", "https://10.77.0.9")
# The lab's certificate is self-signed: TLS is checked to be there, not trusted.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


def pytest_collection_modifyitems(config, items):
    if not INVENTORY.exists():
        skip = pytest.mark.skip(reason=f"no lab inventory at {INVENTORY}: run `make lab` first")
        for item in items:
            item.add_marker(skip)


def runs_unit(inventory: dict, host, unit: str) -> bool:
    """Whether the inventory puts `unit` (synspirit-web@..., synspirit-worker@...,
    synspirit-beat...) on a testinfra host."""
    name, groups = host_name(host), inventory["groups"]
    if unit.startswith("synspirit-web@"):
        return name in groups.get("web", [])
    if unit.startswith("synspirit-worker@"):
        return name in worker_hosts(inventory)
    if unit.startswith("synspirit-beat"):
        return name in groups.get("beat", [])
    return True


@pytest.fixture(scope="session")
def inventory() -> dict:
    """The lab inventory (groups and addresses), read once per run."""
    return read_inventory()


def connect(address: str):
    """A testinfra host over SSH with the lab's key (no known_hosts: lab hosts are rebuilt)."""
    return testinfra.get_host(
        f"ssh://root@{address}", ssh_identity_file=str(SSH_KEY),
        ssh_extra_args=ssh_extra_args())


@pytest.fixture(scope="session")
def lab_host(inventory):
    """lab_host("data1") -> a testinfra host, for checks that involve a second host."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = connect(inventory["addresses"][name])
        return cache[name]
    return get


def host_name(host) -> str:
    """The inventory name of a testinfra host given as ansible://NAME."""
    return host.backend.get_hostname()


def address_of(host) -> str:
    """The lab address of a testinfra host (its ansible_host)."""
    return host.ansible.get_variables()["ansible_host"]


def web_ports(host) -> list[int]:
    """The gunicorn instances a web host should run: one per core, ports from 8000."""
    cores = int(host.check_output("nproc"))
    return [8000 + i for i in range(cores)]


def listening_addresses(host, port: int) -> set[str]:
    """Addresses on which something listens on TCP `port` ("0.0.0.0"/"::" mean all)."""
    found = set()
    for spec in host.socket.get_listening_sockets():
        if spec.startswith("tcp://") and spec.rsplit(":", 1)[1] == str(port):
            found.add(spec[len("tcp://"):].rsplit(":", 1)[0].strip("[]"))
    return found


def app_env(host) -> dict[str, str]:
    """The application's environment on a web host, from /etc/synspirit/*.env."""
    env = {}
    for line in host.check_output("cat /etc/synspirit/*.env").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            env[key.strip()] = value.strip().strip('"').strip("'")
    return env


# ------------------------------------------------------------------ the API through nginx
def lab_session() -> requests.Session:
    """An HTTP session for the lab: no certificate check, and no proxy or CA bundle from the
    environment (with trust_env, REQUESTS_CA_BUNDLE would override verify=False)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = False
    return session


class Api:
    """A user of the site, talking to the load balancer."""

    def __init__(self, base: str = LB_URL):
        self.base = base
        self.session = lab_session()
        self.token: str | None = None
        self.user: dict | None = None

    def request(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=10, **kw)

    def register(self) -> Api:
        name = f"lab_{secrets.token_hex(5)}"
        for attempt in range(10):  # limit_req on auth endpoints may ask us to slow down
            r = self.request("POST", "/api/auth/register",
                             json={"username": name, "password": f"pw-{secrets.token_hex(8)}"})
            if r.status_code not in (429, 503):
                break
            time.sleep(0.5 * (attempt + 1))
        assert r.status_code == 201, r.text
        body = r.json()
        self.user, self.token = body["user"], body["token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self

    def create_post(self) -> int:
        r = self.request("POST", "/api/posts",
                         json={"title": "Lab post", "content": "Written by the lab suite."})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def like(self, post_id: int) -> None:
        r = self.request("POST", "/api/actions",
                         json={"action": "like", "target_type": "post", "target_id": post_id})
        assert r.status_code == 200, r.text

    def post(self, post_id: int) -> dict:
        r = self.request("GET", f"/api/posts/{post_id}")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="session")
def alice() -> Api:
    """A registered user."""
    return Api().register()


@pytest.fixture(scope="session")
def bob() -> Api:
    """Another registered user."""
    return Api().register()
