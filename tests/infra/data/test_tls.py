"""TLS between the hosts with the deployment's own CA (role pki): the application and the
PostgreSQL members connect with TLS and check the server's certificate and name; etcd speaks
only https and lets in only clients and peers with a certificate from that CA. A plain
connection, or a certificate from another CA, is refused."""
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import app_env

testinfra_hosts = []  # each test picks its hosts from the inventory

CA = "/etc/ssl/synspirit/ca.crt"
CERT = "/etc/ssl/synspirit/host.crt"
KEY = "/etc/ssl/private/synspirit-host.key"
TLS_VERSIONS = {"TLSv1.2", "TLSv1.3"}
PATRONI = "/etc/patroni/config.yml"

# A CA that is not the deployment's, with a certificate it signed for the host's own address:
# made on the host in a throwaway folder (openssl from Debian).
OTHER_CA = """set -e
d=$(mktemp -d /tmp/other-ca.XXXXXX)
cd "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=other-ca \
    -addext basicConstraints=critical,CA:TRUE -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=intruder \
    -keyout leaf.key -out leaf.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:%s\\nextendedKeyUsage=serverAuth,clientAuth\\n' "$1" > ext
openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext \
    -out leaf.crt 2>/dev/null
echo "$d"
"""


def sql(host, query: str) -> list[list[str]]:
    out = host.check_output("cd /tmp && runuser -u postgres -- psql -XAt -F '|' -c %s", query)
    return [line.split("|") for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def primary(lab_host, inventory):
    members = json.loads(lab_host(inventory["groups"]["postgresql"][0]).check_output(
        "patronictl -c /etc/patroni/config.yml list --format json"))
    leader = next(m["Member"] for m in members if m["Role"] == "Leader")
    return lab_host(leader), leader


@pytest.fixture(scope="module")
def web(lab_host, inventory):
    return lab_host(inventory["groups"]["web"][0])


@pytest.fixture(scope="module")
def other_ca(inventory):
    """other_ca(host, name): a foreign CA and a certificate it signed for the host's address,
    made on that host; removed afterwards."""
    made = []

    def make(host, name: str) -> str:
        folder = host.check_output("sh -c %s - %s", OTHER_CA, inventory["addresses"][name])
        made.append((host, folder))
        return folder

    yield make
    for host, folder in made:
        host.run("rm -rf %s", folder)


# --- PostgreSQL --------------------------------------------------------------------------------

CONNECT = """import sys, psycopg2
args = dict(a.split('=', 1) for a in sys.argv[1:])
try:
    c = psycopg2.connect(connect_timeout=5, **args)
    print('connected', c.cursor().connection.info.ssl_attribute('protocol'))
except psycopg2.OperationalError as e:
    print('refused', str(e).strip().replace(chr(10), ' '))
"""


def connect_from(web, **params) -> str:
    """What psycopg2 (the application's driver, in its virtualenv) says when it connects."""
    return web.check_output("/opt/synspirit/venv/bin/python -c %s " + " ".join(["%s"] * len(params)),
                            CONNECT, *[f"{k}={v}" for k, v in params.items()])


def db_params(web, host: str) -> dict:
    url = urlsplit(app_env(web)["DATABASE_URL"])
    return {"host": host, "port": "5432", "dbname": url.path.lstrip("/"),
            "user": url.username, "password": url.password}


def test_the_application_is_told_to_verify_the_server(web):
    """DATABASE_URL asks libpq for verify-full against the deployment's CA."""
    query = parse_qs(urlsplit(app_env(web)["DATABASE_URL"]).query)
    assert query["sslmode"] == ["verify-full"]
    assert query["sslrootcert"] == [CA]


def test_the_applications_sessions_are_encrypted(primary):
    """Every network session of the application user on the primary is TLS 1.2 or newer."""
    host, _ = primary
    rows = sql(host, "select s.ssl, s.version from pg_stat_ssl s join pg_stat_activity a using (pid) "
                     "where a.usename = 'synspirit' and a.client_addr is not null")
    assert rows, "no network session of the application on the primary"
    assert all(r[0] == "t" and r[1] in TLS_VERSIONS for r in rows), rows


def test_every_replica_streams_over_tls(primary, inventory):
    host, _ = primary
    rows = sql(host, "select r.application_name, s.ssl, s.version from pg_stat_replication r "
                     "join pg_stat_ssl s using (pid)")
    assert len(rows) == len(inventory["groups"]["postgresql"]) - 1, rows
    assert all(r[1] == "t" and r[2] in TLS_VERSIONS for r in rows), rows


def test_a_plain_connection_from_a_web_host_is_refused(web, primary, inventory):
    _, leader = primary
    out = connect_from(web, sslmode="disable", **db_params(web, inventory["addresses"][leader]))
    assert out.startswith("refused") and "no encryption" in out, out


def test_the_server_is_refused_when_it_is_checked_against_another_ca(web, primary, inventory, other_ca):
    """verify-full with a foreign CA fails on the server's certificate; with the deployment's
    CA the same connection succeeds, over TLS."""
    _, leader = primary
    params = db_params(web, inventory["addresses"][leader])
    foreign = other_ca(web, inventory["groups"]["web"][0])
    out = connect_from(web, sslmode="verify-full", sslrootcert=f"{foreign}/ca.crt", **params)
    assert out.startswith("refused") and "certificate verify failed" in out, out
    out = connect_from(web, sslmode="verify-full", sslrootcert=CA, **params)
    assert out.split()[0] == "connected" and out.split()[1] in TLS_VERSIONS, out


def test_the_members_verify_each_other(primary):
    """Patroni's replication and pg_rewind connections check the other member's certificate
    against the CA, and the server presents the host's certificate."""
    host, _ = primary
    config = json.loads(host.check_output(
        "python3 -c %s", f"import json, yaml; print(json.dumps(yaml.safe_load(open({PATRONI!r}))))"))
    auth = config["postgresql"]["authentication"]
    for user in ("replication", "rewind"):
        assert auth[user]["sslmode"] == "verify-full" and auth[user]["sslrootcert"] == CA
    assert config["postgresql"]["parameters"]["ssl_cert_file"] == CERT
    assert sql(host, "show ssl_min_protocol_version") == [["TLSv1.2"]]


# --- etcd --------------------------------------------------------------------------------------

# GET /health from a host (the data hosts have python3, not curl): "answer BODY", "untrusted
# ERROR" (the server's certificate failed verification) or "refused ERROR".
HEALTH = """import http.client, ssl, sys
address, scheme, ca, cert, key = sys.argv[1:6]
try:
    if scheme == 'http':
        c = http.client.HTTPConnection(address, 2379, timeout=5)
    else:
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        c = http.client.HTTPSConnection(address, 2379, context=ctx, timeout=5)
    c.request('GET', '/health')
    print('answer', c.getresponse().read().decode().replace(' ', ''))
except ssl.SSLCertVerificationError as e:
    print('untrusted', e)
except Exception as e:
    print('refused', type(e).__name__, e)
"""


def etcd_health(host, address: str, scheme: str = "https", ca: str = CA, cert: str = "",
                key: str = "") -> str:
    return host.check_output("python3 -c %s %s %s %s %s %s", HEALTH, address, scheme, ca, cert, key)


@pytest.fixture(scope="module")
def etcd_member(lab_host, inventory):
    name = inventory["groups"]["etcd"][0]
    return lab_host(name), inventory["addresses"][name]


def test_etcd_peers_and_clients_use_https(etcd_member, inventory):
    host, _ = etcd_member
    members = host.check_output("synspirit-etcdctl member list").splitlines()
    assert len(members) == len(inventory["groups"]["etcd"])
    for line in members:
        _, _, name, peer, client, _ = line.split(", ")
        assert peer.startswith("https://") and client.startswith("https://"), line


def test_etcd_refuses_plain_http(etcd_member):
    host, address = etcd_member
    out = etcd_health(host, address, scheme="http")
    assert '"health":"true"' not in out, out


def test_etcd_refuses_a_client_without_a_certificate(etcd_member):
    host, address = etcd_member
    out = etcd_health(host, address)
    assert out.startswith("refused"), out
    out = etcd_health(host, address, cert=CERT, key=KEY)
    assert out.startswith("answer") and '"health":"true"' in out, out


def test_etcd_refuses_a_client_certificate_from_another_ca(etcd_member, lab_host, inventory, other_ca):
    """A client certificate signed by a foreign CA is refused; and etcd's own certificate is
    refused by a client that trusts only that foreign CA. (From another member: the firewall
    lets only the members reach etcd.)"""
    _, address = etcd_member
    name = inventory["groups"]["etcd"][1]
    other = lab_host(name)
    foreign = other_ca(other, name)
    out = etcd_health(other, address, cert=f"{foreign}/leaf.crt", key=f"{foreign}/leaf.key")
    assert out.startswith("refused"), out
    out = etcd_health(other, address, cert=CERT, key=KEY)
    assert out.startswith("answer") and '"health":"true"' in out, out
    out = etcd_health(other, address, ca=f"{foreign}/ca.crt", cert=f"{foreign}/leaf.crt",
                      key=f"{foreign}/leaf.key")
    assert out.startswith("untrusted") and "certificate verify failed" in out, out


def test_every_host_has_its_certificate_from_the_ca(lab_host, inventory):
    """Each host's certificate chains to the deployment's CA and names the host's address."""
    for name in inventory["groups"]["postgresql"] + inventory["groups"]["web"]:
        host = lab_host(name)
        assert host.run("openssl verify -CAfile %s %s", CA, CERT).rc == 0, name
        text = host.check_output("openssl x509 -in %s -noout -ext subjectAltName", CERT)
        assert f"IP Address:{inventory['addresses'][name]}" in text and f"DNS:{name}" in text, text
        key = host.file(KEY)
        assert (key.user, key.group, key.mode) == ("root", "ssl-cert", 0o640), name
