"""Redis and Sentinel speak TLS only, with the deployment's CA (synspirit_redis_tls): a plain
connection from a web host gets nothing, a client that trusts another CA refuses the server,
the replicas and the application use TLS, and every client checks the server."""
import pytest
from conftest import INVENTORY, app_env
from probes import REDIS_TLS_CA, redis, redis_login

testinfra_hosts = []  # each test picks its hosts from the inventory

# A CA that is not the deployment's, made on the host (openssl from Debian).
OTHER_CA = ("set -e; d=$(mktemp -d /tmp/other-ca.XXXXXX); cd \"$d\"; "
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
            "-subj /CN=other-ca -keyout ca.key -out ca.crt 2>/dev/null; echo \"$d\"")

# A Redis command over a plain TCP connection: what comes back (b'' when the server drops it).
PLAIN = """import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
s.settimeout(5)
s.sendall(b"*1\\r\\n$4\\r\\nPING\\r\\n")
try:
    print(repr(s.recv(100)))
except OSError as e:
    print(type(e).__name__)
"""

# A TLS handshake trusting only the CA given: fails on the server's certificate.
PROBE_WITH_CA = """import socket, ssl, sys
address, port, ca = sys.argv[1].split(':')
s = socket.create_connection((address, int(port)), 5)
ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname=address).sendall(b"PING\\r\\n")
"""


@pytest.fixture(scope="module")
def web(lab_host, inventory):
    return lab_host(inventory["groups"]["web"][0])


@pytest.fixture(scope="module")
def redis_addresses(inventory):
    return [inventory["addresses"][n] for n in inventory["groups"]["redis"]]


@pytest.mark.parametrize("port", [6379, 26379])
def test_a_plain_connection_from_a_web_host_gets_no_answer(web, redis_addresses, port):
    """Redis and Sentinel listen in TLS only: PING in plain text gets no PONG, no NOAUTH."""
    for address in redis_addresses:
        out = web.check_output("python3 -c %s %s %s", PLAIN, address, str(port))
        assert "PONG" not in out and "NOAUTH" not in out, (address, port, out)


@pytest.mark.parametrize("port", [6379, 26379])
def test_tls_with_the_deployments_ca_reaches_redis_and_sentinel(web, redis_addresses, port):
    """Over TLS, the server's certificate checked against the CA and its address: logged out,
    NOAUTH; so the plain failure above is the lack of TLS."""
    for address in redis_addresses:
        [reply] = redis(web, address, port, ["PING"], ca=REDIS_TLS_CA)
        assert isinstance(reply, dict) and reply["error"].startswith("NOAUTH"), (address, port, reply)


def test_a_client_trusting_another_ca_refuses_the_server(web, redis_addresses):
    """A client that trusts only a foreign CA refuses Redis' and Sentinel's certificates."""
    folder = web.check_output("sh -c %s", OTHER_CA)
    try:
        for port in (6379, 26379):
            target = f"{redis_addresses[0]}:{port}:{folder}/ca.crt"
            failed = web.run("python3 -c %s %s", PROBE_WITH_CA, target)
            assert failed.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in failed.stderr, failed.stderr
    finally:
        web.run("rm -rf %s", folder)


def test_the_application_is_told_to_use_tls_and_the_ca(web):
    env = app_env(web)
    assert env["REDIS_URL"].split("://")[0] == "rediss+sentinel"
    assert env["REDIS_TLS_CA_FILE"] == REDIS_TLS_CA


def test_the_replicas_replicate_over_tls(lab_host, inventory):
    """Every instance replicates in TLS (tls-replication) and every replica's link is up."""
    admin = ["AUTH", "admin", (INVENTORY.parent / "secrets/redis_admin_password.txt").read_text().split()[0]]
    links = []
    for name in inventory["groups"]["redis"]:
        host = lab_host(name)
        login, config, info = redis(host, inventory["addresses"][name], 6379, admin,
                                    ["CONFIG", "GET", "tls-replication"], ["INFO", "replication"])
        assert login == "OK" and config == ["tls-replication", "yes"], (name, config)
        if "role:slave" in info:
            links.append("master_link_status:up" in info)
    assert links and all(links), links


def test_the_application_logs_in_over_tls(web, inventory):
    """The application's own credentials over TLS: PONG (test_access checks the rest)."""
    address = inventory["addresses"][inventory["groups"]["redis"][0]]
    login, pong = redis(web, address, 6379, redis_login(app_env(web)["REDIS_URL"]), ["PING"])
    assert (login, pong) == ("OK", "PONG")

