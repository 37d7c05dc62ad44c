"""The load balancer: nginx installed, running, configured with every web instance upstream."""
import asyncio
import re
import ssl

import pytest
from conftest import LB_URL, address_of, lab_session, web_ports

testinfra_hosts = ["ansible://lb"]


def test_nginx_is_installed(host):
    """Debian's nginx package is installed."""
    assert host.package("nginx").is_installed


def test_nginx_is_running_and_enabled(host):
    """nginx runs now and starts at boot."""
    service = host.service("nginx")
    assert service.is_running
    assert service.is_enabled


def test_nginx_configuration_is_valid(host):
    """nginx -t accepts the configuration."""
    host.run_expect([0], "nginx -t")


@pytest.mark.parametrize("port", [80, 443])
def test_nginx_listens_for_clients(host, port):
    """HTTP and HTTPS are open on the load balancer."""
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or \
        host.socket(f"tcp://{host.ansible.get_variables()['ansible_host']}:{port}").is_listening


def test_upstreams_list_every_web_instance(host, lab_host, inventory):
    """Every upstream block names exactly the instances of every web host (one per core)."""
    expected = {f"{inventory['addresses'][web]}:{port}"
                for web in inventory["groups"]["web"] for port in web_ports(lab_host(web))}
    config = host.check_output("nginx -T 2>/dev/null")
    upstreams = re.findall(r"upstream\s+(\S+)\s*\{(.*?)\}", config, re.S)
    assert upstreams
    for name, body in upstreams:
        if name == "synspirit_acme_peers":  # the other lb hosts' port 80 (test_acme.py)
            continue
        servers = set(re.findall(r"^\s*server\s+([\d.]+:\d+)", body, re.M))
        assert servers == expected, name


def test_socketio_is_routed_by_client_address(host):
    """The upstream used for /socket.io/ hashes on the client address (sticky sessions)."""
    config = host.check_output("nginx -T 2>/dev/null")
    assert re.search(r"hash\s+\$remote_addr\s+consistent", config)
    assert "least_conn" in config


def test_http_is_redirected_to_https():
    """A plain HTTP request is redirected to the HTTPS site."""
    r = lab_session().get(LB_URL.replace("https://", "http://") + "/api/posts",
                          allow_redirects=False, timeout=10)
    assert r.status_code in (301, 308)
    assert r.headers["Location"].startswith("https://")


def test_https_hides_the_version_and_sends_security_headers():
    """Responses say only "nginx" and carry the security headers."""
    r = lab_session().get(LB_URL + "/api/posts", timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Server") == "nginx"
    for header in ("Strict-Transport-Security", "X-Content-Type-Options"):
        assert header in r.headers, header
    assert "X-Frame-Options" in r.headers or "frame-ancestors" in r.headers.get(
        "Content-Security-Policy", "")


WEBSOCKETS_HELD = 2000  # above the ~770 that Debian's 768 connections per worker allow


async def _open_websockets(host: str, count: int) -> tuple[int, list[str]]:
    """Opens `count` Socket.IO websockets through the load balancer at once and holds them
    until all have answered; returns how many were upgraded (101) and a few failures."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    limit = asyncio.Semaphore(200)  # handshakes in flight, not connections held
    writers, failures = [], []

    async def one() -> bool:
        try:
            async with limit:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, 443, ssl=context), 30)
                writer.write(request)
                status = await asyncio.wait_for(reader.readline(), 30)
            writers.append(writer)
            if b" 101 " in status:
                return True
            failures.append(status.decode(errors="replace").strip() or "closed")
        except (TimeoutError, OSError) as e:
            failures.append(repr(e))
        return False

    upgraded = sum(await asyncio.gather(*(one() for _ in range(count))))
    for writer in writers:
        writer.close()
    return upgraded, failures[:5]


def test_holds_thousands_of_websockets_at_once(host):
    """2,000 Socket.IO websockets open through nginx at the same time are all upgraded: the
    workers' connection limit is raised from Debian's 768, which would cut them off at ~770."""
    upgraded, failures = asyncio.run(_open_websockets(address_of(host), WEBSOCKETS_HELD))
    assert upgraded == WEBSOCKETS_HELD, failures


def test_a_forwarded_host_sent_by_the_client_is_replaced():
    """nginx sets X-Forwarded-Host itself (the app trusts it, with the Host, for Socket.IO's
    same-origin check): a client naming a foreign site there cannot make that site's Origin
    look like our own. Control: the site's own Origin is accepted."""
    polling = LB_URL + "/socket.io/?EIO=4&transport=polling"
    session = lab_session()
    foreign = session.get(polling, timeout=10, headers={
        "Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"})
    assert foreign.status_code == 400, foreign.text
    own = session.get(polling, timeout=10, headers={"Origin": LB_URL})
    assert own.status_code == 200 and own.text.startswith("0{"), own.text
