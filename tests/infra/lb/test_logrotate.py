"""nginx's logs on the load balancer rotate daily with the nginx role's retention, and nginx
keeps logging into the new file after a rotation."""
import secrets

import yaml
from conftest import REPO, address_of, lab_session, wait_until

testinfra_hosts = ["ansible://lb"]

DEFAULTS = yaml.safe_load((REPO / "ansible/roles/nginx/defaults/main.yml").read_text())


def test_logrotate_timer_is_active(host):
    """logrotate.timer is enabled and waiting, so rotation happens without anyone's help."""
    assert host.service("logrotate.timer").is_enabled
    assert host.check_output("systemctl is-active logrotate.timer") == "active"


def test_logrotate_reads_the_roles_retention(host):
    """logrotate -d (dry run) parses /etc/logrotate.d/nginx with the role's frequency and count."""
    result = host.run("logrotate -d /etc/logrotate.d/nginx")
    assert result.rc == 0, result.stderr
    out = result.stdout + result.stderr  # logrotate -d writes its report to stderr
    assert "rotating pattern: /var/log/nginx/*.log" in out
    # logrotate's own words for each frequency ("daily" is "every 1 days" to it).
    when = {"daily": "after 1 days", "weekly": "weekly", "monthly": "monthly"}[
        DEFAULTS["nginx_log_rotate_frequency"]]
    assert f"{when} ({DEFAULTS['nginx_log_rotate_count']} rotations)" in out
    assert "error:" not in out


def test_nginx_logs_into_a_fresh_file_after_a_rotation(host):
    """After a forced rotation, a new request lands in the new access.log, not in access.log.1."""
    # This host's own address: the floating address reaches only the lb host holding it.
    url = f"https://{address_of(host)}"
    session = lab_session()
    session.get(f"{url}/healthz?before-rotation", timeout=10)
    host.run_expect([0], "logrotate --force /etc/logrotate.d/nginx")
    assert host.file("/var/log/nginx/access.log.1").exists
    marker = f"after-rotation-{secrets.token_hex(6)}"
    assert session.get(f"{url}/healthz?{marker}", timeout=10).status_code == 200

    def logged():
        return marker in host.check_output("cat /var/log/nginx/access.log")
    assert wait_until(logged, 10, interval=0.5), "nginx did not reopen its log after rotation"
    assert marker not in host.check_output("cat /var/log/nginx/access.log.1")
