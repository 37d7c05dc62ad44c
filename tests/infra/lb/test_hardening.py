"""The load balancer's defences, from a client's side: old TLS versions are refused, and slow
clients (slowloris-style headers and bodies) are cut off by nginx's timeouts while everyone
else is still served."""
import socket
import ssl
import subprocess
import threading
import time
import warnings
from urllib.parse import urlsplit

import pytest
import requests
from conftest import LB_URL

LB = urlsplit(LB_URL).hostname
# nginx/synspirit.conf.j2: client_header_timeout and client_body_timeout.
CLIENT_TIMEOUT = 10


def client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client willing to speak exactly `version` (even the ones OpenSSL disables by default)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def handshake(host: str, port: int, version: ssl.TLSVersion) -> str:
    """The version negotiated, or "refused" when the server will not speak it."""
    with socket.create_connection((host, port), 5) as sock:
        try:
            with client_context(version).wrap_socket(sock) as tls:
                return tls.version()
        except (ssl.SSLError, ConnectionResetError):
            return "refused"


@pytest.fixture(scope="module")
def tls11_server(tmp_path_factory):
    """A local server that speaks TLS 1.0-1.3: proves this client can offer TLS 1.1, so the load
    balancer's refusal below is its own."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", folder / "key.pem",
                    "-out", folder / "cert.pem"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()
    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_tls_below_1_2_is_refused(tls11_server):
    """TLS 1.0 and 1.1 handshakes fail at the load balancer (this client speaks TLS 1.1)."""
    assert handshake("127.0.0.1", tls11_server, ssl.TLSVersion.TLSv1_1) == "TLSv1.1"
    assert handshake(LB, 443, ssl.TLSVersion.TLSv1_1) == "refused"
    assert handshake(LB, 443, ssl.TLSVersion.TLSv1) == "refused"


@pytest.mark.parametrize("version, name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                           (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_tls_1_2_and_1_3_are_spoken(version, name):
    assert handshake(LB, 443, version) == name


def open_slow_client(first_bytes: bytes) -> ssl.SSLSocket:
    ctx = client_context(ssl.TLSVersion.TLSv1_3)
    tls = ctx.wrap_socket(socket.create_connection((LB, 443), 5))
    tls.sendall(first_bytes)
    return tls


def closed_by_server(tls: ssl.SSLSocket) -> bool:
    """True once the server has closed (EOF, a 408 followed by EOF, or a reset)."""
    tls.settimeout(0.05)
    try:
        while True:
            data = tls.recv(4096)
            if not data:
                return True
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except (ssl.SSLError, OSError):
        return True


def test_slow_clients_are_cut_off_and_others_still_served():
    """200 clients trickle headers one line every 2 s and 50 stall half-way through a body: the
    API still answers a normal client meanwhile, and nginx closes every slow connection within
    its timeout (10 s) plus slack, although the header tricklers never stop sending."""
    header_slow = [open_slow_client(b"GET /api/posts HTTP/1.1\r\nHost: lb\r\n") for _ in range(200)]
    body_slow = [open_slow_client(b"POST /api/auth/login HTTP/1.1\r\nHost: lb\r\n"
                                  b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{")
                 for _ in range(50)]
    started = time.monotonic()
    answered = requests.get(f"{LB_URL}/api/posts", verify=False, timeout=5)
    assert answered.status_code == 200
    still_open = set(range(len(header_slow))) | {1000 + i for i in range(len(body_slow))}
    line = 0
    while still_open and time.monotonic() - started < CLIENT_TIMEOUT + 10:
        line += 1
        for i in sorted(still_open):
            tls = header_slow[i] if i < 1000 else body_slow[i - 1000]
            if closed_by_server(tls):
                still_open.discard(i)
            elif i < 1000:
                try:
                    tls.sendall(b"X-Slow-%d: a\r\n" % line)
                except OSError:
                    still_open.discard(i)
        time.sleep(2)
    cut_after = time.monotonic() - started
    for tls in header_slow + body_slow:
        tls.close()
    assert not still_open, f"{len(still_open)} slow connections still open after {cut_after:.0f} s"
    assert requests.get(f"{LB_URL}/api/posts", verify=False, timeout=5).status_code == 200


def test_hsts_is_sent_for_at_least_six_months_on_errors_too():
    """Strict-Transport-Security with a real max-age on every answer, a 404 included."""
    for path in ("/api/posts", "/no-such-page"):
        r = requests.get(f"{LB_URL}{path}", verify=False, timeout=10)
        hsts = r.headers.get("Strict-Transport-Security", "")
        max_age = int(hsts.split("max-age=")[1].split(";")[0]) if "max-age=" in hsts else 0
        assert max_age >= 15_552_000, (path, r.status_code, hsts)
