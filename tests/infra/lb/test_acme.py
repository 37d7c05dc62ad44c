"""The site's certificate from an ACME CA (roles/acme): in the lab, Pebble on mon1
(tests/lab/pebble.yml), whose DNS gives synspirit.lab the floating address. Each lb host obtains
and renews its own certificate with certbot --webroot; the CA's HTTP-01 request reaches whichever
lb holds the floating address, which asks the other lb hosts for a token it does not have.
A failed renewal keeps the served certificate and is reported (synspirit_acme_renewal_ok 0);
the next good one is served at once (certbot's deploy hook reloads nginx)."""
from __future__ import annotations

import json
import secrets
import socket
import ssl
import time

import pytest
from conftest import LB_URL, lab_session, wait_until
from cryptography import x509
from cryptography.x509.oid import NameOID

testinfra_hosts = ["ansible://lb"]

FLOATING = LB_URL.split("://", 1)[1].split("/", 1)[0]
DOMAIN = "synspirit.lab"                      # tests/lab/lib/converge.sh: synspirit_acme_domain
WEBROOT = "/var/www/acme"                     # synspirit_acme_webroot's default
CHALLENGES = f"{WEBROOT}/.well-known/acme-challenge"
METRICS_FILE = "/var/lib/prometheus/node-exporter/synspirit_acme.prom"
FORCE_DROPIN = "/run/systemd/system/certbot.service.d/zz-test-force-renewal.conf"

# Run on mon1 with its own python3: Pebble's current root (management port), over HTTPS checked
# against the deployment's CA (Pebble presents mon1's host certificate).
_ROOT = r'''
import ssl, urllib.request
ctx = ssl.create_default_context(cafile="/etc/ssl/synspirit/ca.crt")
print(urllib.request.urlopen("https://127.0.0.1:15000/roots/0", context=ctx, timeout=10).read().decode())
'''

# Run on mon1: an instant query of its Prometheus (asked from that host, as tests/infra/monitoring
# does: the firewall lets no other host in), as JSON.
_QUERY = r'''
import sys, urllib.parse, urllib.request
url = sys.argv[2] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[1]})
print(urllib.request.urlopen(url, timeout=10).read().decode())
'''


def served(address: str, context: ssl.SSLContext | None = None) -> x509.Certificate:
    """The certificate nginx at address:443 presents for the site's name."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, 443), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=DOMAIN) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def metrics(host) -> dict[str, float]:
    lines = host.file(METRICS_FILE).content_string.splitlines()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))}


def start_certbot(lb) -> int:
    """systemctl start certbot.service until its metrics are written (the lab's containers may fail
    to spawn a process into the unit's cgroup, status 219/CGROUP, as roles/acme allows for):
    the start's exit status."""
    for _ in range(3):
        started = time.time()
        rc = lb.run("systemctl start certbot.service").rc
        if metrics(lb)["synspirit_acme_renewal_last_run_timestamp_seconds"] >= int(started):
            return rc
    raise AssertionError("certbot.service wrote no metrics in 3 runs")


@pytest.fixture(scope="module")
def mon1(lab_host, inventory):
    return lab_host(inventory["groups"]["monitoring"][0])


@pytest.fixture(scope="module")
def pebble_root(mon1) -> str:
    return mon1.check_output("python3 -c %s", _ROOT)


def test_the_floating_address_serves_a_certificate_from_the_acme_ca(pebble_root):
    """synspirit.lab, issued by Pebble's intermediate, verifies against Pebble's root and not
    against the system's CAs."""
    cert = served(FLOATING)
    assert DOMAIN in names(cert)
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert "Pebble" in issuer, issuer
    trusted = ssl.create_default_context(cadata=pebble_root)
    served(FLOATING, trusted)  # raises unless the chain verifies for synspirit.lab
    with pytest.raises(ssl.SSLCertVerificationError):
        served(FLOATING, ssl.create_default_context())


def test_each_lb_host_serves_its_own_certificate(inventory):
    """Every lb host has a certificate of its own for the site (one serial each)."""
    certs = {name: served(inventory["addresses"][name]) for name in inventory["groups"]["lb"]}
    assert all(DOMAIN in names(c) for c in certs.values())
    serials = {c.serial_number for c in certs.values()}
    assert len(serials) == len(certs), certs


def test_nginx_serves_certbots_lineage(host):
    """nginx's certificate files are links to certbot's live lineage."""
    assert host.file("/etc/nginx/tls/synspirit.crt").linked_to == \
        host.file("/etc/letsencrypt/live/synspirit/fullchain.pem").linked_to
    assert host.file("/etc/nginx/tls/synspirit.key").linked_to == \
        host.file("/etc/letsencrypt/live/synspirit/privkey.pem").linked_to


def test_certbot_timer_renews_with_the_ca_bundle_and_the_metrics(host):
    """certbot.timer is enabled and running; certbot.service gets the private CA and writes the
    metrics after every run."""
    timer = host.service("certbot.timer")
    assert timer.is_enabled
    assert timer.is_running
    show = host.check_output("systemctl show certbot.service -p Environment -p ExecStopPost")
    assert "REQUESTS_CA_BUNDLE=/etc/ssl/synspirit/ca.crt" in show
    assert "/usr/local/lib/synspirit/acme-metrics" in show


def test_a_challenge_token_is_served_through_every_lb_host(inventory, lab_host):
    """A token on one lb host is answered on every lb host's port 80 (the others ask it); a
    missing token is a 404 everywhere, and a forwarded request is answered locally only."""
    session = lab_session()
    lbs = inventory["groups"]["lb"]
    token = secrets.token_urlsafe(16)
    owner = lab_host(lbs[0])
    owner.run_expect([0], f"mkdir -p {CHALLENGES} && echo -n {token}.key > {CHALLENGES}/{token}")
    try:
        for name in lbs:
            r = session.get(f"http://{inventory['addresses'][name]}/.well-known/acme-challenge/{token}",
                            allow_redirects=False, timeout=10)
            assert (r.status_code, r.text) == (200, f"{token}.key"), name
            missing = session.get(f"http://{inventory['addresses'][name]}/.well-known/acme-challenge/x{token}",
                                  allow_redirects=False, timeout=10)
            assert missing.status_code == 404, name
        for name in lbs[1:]:
            forwarded = session.get(f"http://{inventory['addresses'][name]}/.well-known/acme-challenge/{token}",
                                    headers={"X-Synspirit-Acme-Forwarded": "1"},
                                    allow_redirects=False, timeout=10)
            assert forwarded.status_code == 404, name
        through = session.get(f"http://{FLOATING}/.well-known/acme-challenge/{token}",
                              allow_redirects=False, timeout=10)
        assert (through.status_code, through.text) == (200, f"{token}.key")
    finally:
        owner.run(f"rm -f {CHALLENGES}/{token}")


def test_prometheus_has_each_lb_hosts_expiry_and_renewal(inventory, mon1):
    """Every lb host reports renewal_ok 1 and a certificate valid more than 14 days ahead."""
    def query(expr: str) -> list[dict]:
        out = mon1.check_output("python3 -c %s %s %s", _QUERY, expr, prometheus)
        return json.loads(out)["data"]["result"]
    prometheus = f"http://{inventory['addresses'][inventory['groups']['monitoring'][0]]}:9090"
    lbs = set(inventory["groups"]["lb"])
    horizon = time.time() + 14 * 86400

    def good():
        expiry = {r["metric"]["host"]: float(r["value"][1]) for r in query(
            f'synspirit_tls_certificate_expiry_timestamp_seconds{{domain="{DOMAIN}"}}')}
        ok = {r["metric"]["host"]: float(r["value"][1])
              for r in query("synspirit_acme_renewal_ok")}
        return (set(expiry) >= lbs and all(expiry[h] > horizon for h in lbs)
                and set(ok) >= lbs and all(ok[h] == 1 for h in lbs))
    assert wait_until(good, timeout=90, interval=3), query('{__name__=~"synspirit_(acme|tls)_.*"}')


def test_a_failed_renewal_keeps_the_certificate_and_the_next_one_is_served(inventory, lab_host, mon1):
    """With the CA's DNS away, a forced renewal fails: the served certificate stays and
    renewal_ok is 0. With it back, the next renewal is served (a new serial) and renewal_ok is 1."""
    name = inventory["groups"]["lb"][-1]
    lb = lab_host(name)
    address = inventory["addresses"][name]
    before = served(address).serial_number
    dropin = (r"[Service]\nExecStart=\n"
              r"ExecStart=/usr/bin/certbot -q renew --no-random-sleep-on-renew --force-renewal\n")
    lb.run_expect([0], f"mkdir -p {FORCE_DROPIN.rsplit('/', 1)[0]} && printf '{dropin}' > {FORCE_DROPIN}"
                       " && systemctl daemon-reload")
    try:
        mon1.run_expect([0], "systemctl stop pebble-challtestsrv.service")
        started = time.time()
        assert start_certbot(lb) != 0
        assert metrics(lb)["synspirit_acme_renewal_ok"] == 0
        assert metrics(lb)["synspirit_acme_renewal_last_run_timestamp_seconds"] >= int(started)
        assert served(address).serial_number == before
        lb.run_expect([0], "nginx -t -q")

        mon1.run_expect([0], "systemctl start pebble-challtestsrv.service")
        assert start_certbot(lb) == 0
        assert metrics(lb)["synspirit_acme_renewal_ok"] == 1
        assert wait_until(lambda: served(address).serial_number != before, timeout=15, interval=0.5)
        expiry = metrics(lb)[f'synspirit_tls_certificate_expiry_timestamp_seconds{{domain="{DOMAIN}"}}']
        assert expiry == pytest.approx(served(address).not_valid_after_utc.timestamp(), abs=1)
    finally:
        mon1.run("systemctl start pebble-challtestsrv.service")
        lb.run(f"rm -f {FORCE_DROPIN} && systemctl daemon-reload")
        # renewal_ok back to 1 whatever happened above (nothing is due: a plain renew succeeds).
        start_certbot(lb)
