"""Application hosts (web and worker): the service user, the virtualenv, unit files and
configuration, owners and modes."""
import hashlib
import json
import re

import pytest
from conftest import REPO, runs_unit, web_ports

testinfra_hosts = ["ansible://web", "ansible://worker"]

UNIT_FILES = ["synspirit-web@.service", "synspirit-worker@.service", "synspirit-beat.service",
              "synspirit.target"]


def test_service_user_cannot_log_in(host):
    """The synspirit system user exists, with no login shell."""
    user = host.user("synspirit")
    assert user.exists
    assert user.uid < 1000
    assert user.shell in ("/usr/sbin/nologin", "/bin/false")


def test_application_is_installed_in_the_virtualenv(host):
    """The synspirit package imports from /opt/synspirit/venv (installed from the wheelhouse)."""
    assert host.file("/opt/synspirit/venv/bin/python").exists
    host.run_expect([0], "/opt/synspirit/venv/bin/python -c %s",
                    "import importlib.util as u; assert u.find_spec('app') and u.find_spec('run')")
    assert host.file("/opt/synspirit/venv").user == "root"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_virtualenv_holds_exactly_the_pinned_versions(host):
    """Every package pinned in backend/requirements.txt is installed at its pinned version (a
    changed pin reaches the hosts, in either direction)."""
    pins = {}
    for line in (REPO / "backend/requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].split(";")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            pins[canonical(name)] = version.strip()
    installed = {canonical(p["name"]): p["version"] for p in json.loads(host.check_output(
        "/opt/synspirit/venv/bin/pip list --format=json --disable-pip-version-check"))}
    wrong = {name: (version, installed.get(name)) for name, version in pins.items()
             if installed.get(name) != version}
    assert len(pins) > 50 and not wrong, wrong


def test_virtualenv_is_not_writable_by_the_service_user(host):
    """The service user cannot change the code it runs."""
    with host.sudo("synspirit"):
        assert host.run("test -w /opt/synspirit/venv/bin/python").rc != 0


def test_env_files_are_readable_only_by_root_and_the_service_user(host):
    """Every /etc/synspirit/*.env (they hold secrets) is 0640 root:synspirit."""
    names = host.check_output("ls /etc/synspirit/").split()
    env_files = [n for n in names if n.endswith(".env")]
    assert env_files
    for name in env_files:
        f = host.file(f"/etc/synspirit/{name}")
        assert (f.user, f.group, f.mode) == ("root", "synspirit", 0o640), name


@pytest.mark.parametrize("name, variable", [
    ("LOGIN_RATE_LIMIT", "synspirit_login_rate_limit"),
    ("REGISTER_RATE_LIMIT", "synspirit_register_rate_limit"),
    ("WRITE_RATE_LIMIT", "synspirit_write_rate_limit"),
    ("VIEW_DEDUP_SECONDS", "synspirit_view_dedup_seconds"),
    ("NOTIFICATION_RETENTION_DAYS", "synspirit_notification_retention_days"),
])
def test_optional_settings_of_the_inventory_reach_the_environment(host, name, variable):
    """A rate limit or view window the inventory sets is in synspirit.env; one it leaves empty
    is not written (the application's default applies)."""
    wanted = host.ansible.get_variables().get(variable, "")
    env = host.check_output("cat /etc/synspirit/synspirit.env").splitlines()
    written = [line.partition("=")[2] for line in env if line.startswith(f"{name}=")]
    assert written == ([wanted] if wanted else [])


def test_the_inventorys_admins_reach_the_environment(host):
    """synspirit_admins is SYNSPIRIT_ADMINS in synspirit.env, comma-separated (the lab names
    lab_admin); an empty list writes nothing."""
    wanted = ",".join(host.ansible.get_variables().get("synspirit_admins", []))
    env = host.check_output("cat /etc/synspirit/synspirit.env").splitlines()
    written = [line.partition("=")[2] for line in env if line.startswith("SYNSPIRIT_ADMINS=")]
    assert written == ([wanted] if wanted else [])


@pytest.mark.parametrize("unit", UNIT_FILES)
def test_unit_files_are_installed_as_they_are_in_the_repository(host, inventory, unit):
    """The unit systemd loads is the repository's file, byte for byte, root-owned 0644."""
    if not runs_unit(inventory, host, unit):
        pytest.skip(f"the inventory puts no {unit} on this host")
    instance = {"synspirit-web@.service": f"synspirit-web@{web_ports(host)[0]}.service",
                "synspirit-worker@.service": "synspirit-worker@io.service"}.get(unit, unit)
    path = host.check_output(f"systemctl show -p FragmentPath --value {instance}")
    assert path.endswith("/" + unit)
    f = host.file(path)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    source = REPO / "systemd" / unit
    if source.exists():
        assert f.sha256sum == hashlib.sha256(source.read_bytes()).hexdigest()


def test_state_directory_belongs_to_the_service_user(host):
    """/var/lib/synspirit exists and belongs to synspirit."""
    d = host.file("/var/lib/synspirit")
    assert d.is_directory
    assert d.user == "synspirit"
