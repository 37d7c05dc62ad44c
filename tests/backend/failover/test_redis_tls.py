"""Redis and Sentinel over TLS, as the `redis` role deploys them with synspirit_redis_tls: a real
redis-server and redis-sentinel listening in TLS only (`port 0`, `tls-port`, the passwords
as authentication, no client certificate), their certificate from a CA made here. With
REDIS_URL=rediss+sentinel://... and REDIS_TLS_CA_FILE every client of the application checks
the server: its own client, Celery's broker (a like counted by the io worker), RedBeat (a task
from beat ran) and Flask-Limiter (the login limit). A client that trusts another CA, or that
finds another name in the certificate, is refused (docs/contract.md)."""
from __future__ import annotations

import datetime
import ipaddress
import re
import secrets
import uuid
from pathlib import Path

import pytest
import redis
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testkit.apiclient import API
from testkit.processes import VENV_BIN, WORKER_OPTIONS, free_port, web_command
from testkit.waiting import wait_until

MASTER = "synspirit"


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(folder: Path, name: str):
    """A CA (its key and certificate written to folder/name.key, .crt)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(folder / f"{name}.key", key)
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_server_cert(folder: Path, name: str, ca, names: list[x509.GeneralName]) -> None:
    """A server certificate for `names`, signed by ca (key, cert): folder/name.key, .crt."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(folder / f"{name}.key", key)
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class TLSRedis:
    """A TLS-only redis-server and a TLS-only Sentinel watching it (quorum 1), and a second
    TLS-only redis-server whose certificate names only `elsewhere.example`."""

    def __init__(self, procs, folder: Path):
        self.dir, self.procs = folder, procs
        self.password = secrets.token_hex(16)
        ca = make_ca(folder, "ca")
        make_ca(folder, "other-ca")
        make_server_cert(folder, "server", ca, [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                x509.DNSName("localhost")])
        make_server_cert(folder, "misnamed", ca, [x509.DNSName("elsewhere.example")])
        self.ca, self.other_ca = str(folder / "ca.crt"), str(folder / "other-ca.crt")
        self.port, self.sentinel_port, self.misnamed_port = free_port(), free_port(), free_port()
        self.names: list[str] = []
        self._start("redis-tls", self.port, "server", [f"requirepass {self.password}"])
        self._start("redis-tls-misnamed", self.misnamed_port, "misnamed", [f"requirepass {self.password}"])
        self._start("sentinel-tls", self.sentinel_port, "server", [
            f"requirepass {self.password}",
            f"sentinel monitor {MASTER} 127.0.0.1 {self.port} 1",
            f"sentinel auth-pass {MASTER} {self.password}"], binary="/usr/bin/redis-sentinel")

    def _start(self, name: str, port: int, cert: str, lines: list[str],
               binary: str = "/usr/bin/redis-server") -> None:
        conf = self.dir / f"{name}.conf"
        conf.write_text("\n".join([
            "port 0", f"tls-port {port}", "bind 127.0.0.1", f"dir {self.dir}", 'save ""',
            f"tls-cert-file {self.dir / (cert + '.crt')}", f"tls-key-file {self.dir / (cert + '.key')}",
            f"tls-ca-cert-file {self.ca}", "tls-auth-clients no", "tls-replication yes",
            *lines]) + "\n")
        self.procs.spawn(name, [binary, str(conf)])
        self.names.append(name)
        assert wait_until(lambda: self._pong(port), 10, 0.1), f"{name} did not answer over TLS"

    def _pong(self, port: int) -> bool:
        try:
            return redis.Redis(host="127.0.0.1", port=port, password=self.password, ssl=True,
                               ssl_ca_certs=self.ca, ssl_check_hostname=False,
                               socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def url(self, scheme: str = "rediss+sentinel") -> str:
        if scheme.endswith("sentinel"):
            return f"{scheme}://:{self.password}@127.0.0.1:{self.sentinel_port}/{MASTER}"
        return f"{scheme}://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.procs.stop(*self.names, timeout=5)


@pytest.fixture(scope="module")
def tls_redis(procs, tmp_path_factory):
    servers = TLSRedis(procs, tmp_path_factory.mktemp("redis-tls"))
    yield servers
    servers.stop()


@pytest.fixture
def tls_env(monkeypatch, tls_redis):
    """This process's environment as a web host's synspirit.env has it."""
    monkeypatch.setenv("REDIS_TLS_CA_FILE", tls_redis.ca)
    monkeypatch.delenv("REDIS_TLS_CHECK_HOSTNAME", raising=False)
    return tls_redis


def _client(url: str):
    from app.redis_connect import connect

    return connect(url, socket_timeout=3, socket_connect_timeout=3)


def test_the_application_client_reaches_the_master_the_sentinel_names_over_tls(tls_env):
    client = _client(tls_env.url())
    key = f"tls-{uuid.uuid4().hex}"
    assert client.set(key, "1", ex=30) and client.get(key) == b"1"
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == tls_env.ca
    # the master's connection is a TLS one (the Sentinel's, too: it answered above)
    assert type(client.connection_pool.get_connection()).__name__ == "MasterSSLConnection"


def test_a_plain_url_to_the_tls_ports_gets_nothing(tls_env):
    from app.redis_connect import connect

    with pytest.raises(redis.ConnectionError):
        connect(tls_env.url("redis"), socket_timeout=2, socket_connect_timeout=2).ping()
    with pytest.raises(redis.ConnectionError):
        connect(tls_env.url("redis+sentinel"), socket_timeout=2, socket_connect_timeout=2).ping()


def test_a_client_trusting_another_ca_is_refused(tls_env, monkeypatch):
    """Straight to the server: the handshake fails on the certificate. Through the Sentinel: no
    Sentinel could be asked (its certificate fails the same way), so no master."""
    monkeypatch.setenv("REDIS_TLS_CA_FILE", tls_env.other_ca)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _client(tls_env.url("rediss")).ping()
    from redis.sentinel import MasterNotFoundError

    with pytest.raises(MasterNotFoundError):
        _client(tls_env.url()).ping()


def test_the_name_in_the_certificate_is_checked_unless_told_not_to(tls_env, monkeypatch):
    url = f"rediss://:{tls_env.password}@127.0.0.1:{tls_env.misnamed_port}/0"
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _client(url).ping()
    monkeypatch.setenv("REDIS_TLS_CHECK_HOSTNAME", "0")
    assert _client(url).ping()


def test_an_unreadable_ca_file_or_a_bad_setting_stops_the_process(tls_env, monkeypatch, tmp_path):
    from app.config import ConfigError, parse_redis_url

    monkeypatch.setenv("REDIS_TLS_CA_FILE", str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError, match="REDIS_TLS_CA_FILE"):
        parse_redis_url(tls_env.url())
    (tmp_path / "garbage.crt").write_text("not a certificate\n")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", str(tmp_path / "garbage.crt"))
    with pytest.raises(ConfigError, match="REDIS_TLS_CA_FILE"):
        parse_redis_url(tls_env.url("rediss"))
    monkeypatch.setenv("REDIS_TLS_CA_FILE", tls_env.ca)
    monkeypatch.setenv("REDIS_TLS_CHECK_HOSTNAME", "maybe")
    with pytest.raises(ConfigError, match="REDIS_TLS_CHECK_HOSTNAME"):
        parse_redis_url(tls_env.url())


def test_a_plain_url_ignores_the_tls_settings(tls_env):
    from app.config import parse_redis_url

    location = parse_redis_url("redis+sentinel://:pw@127.0.0.1:26379/synspirit")
    assert not location.tls and location.ssl_options() == {}
    assert "ssl" not in location.sentinel_kwargs()


def test_every_client_library_is_given_the_tls_settings(tls_env):
    """Celery's broker and results, RedBeat and Flask-Limiter, as each is configured."""
    from app.celery_config import settings
    from app.config import parse_redis_url

    conf = settings({"REDIS_URL": tls_env.url()})
    for name in ("broker_use_ssl", "redis_backend_use_ssl", "redbeat_redis_use_ssl"):
        assert conf[name]["ssl_ca_certs"] == tls_env.ca and conf[name]["ssl_check_hostname"], name
    for name in ("broker_transport_options", "result_backend_transport_options"):
        sentinel = conf[name]["sentinel_kwargs"]
        assert sentinel["ssl"] is True and sentinel["ssl_ca_certs"] == tls_env.ca, name
    assert conf["redbeat_redis_options"]["sentinel_kwargs"]["ssl"] is True
    _, storage = parse_redis_url(tls_env.url()).limits_storage()
    assert storage["connection_pool"].connection_kwargs["ssl_ca_certs"] == tls_env.ca


def _log(procs, name: str) -> str:
    return procs.log_of(name).read_text(errors="replace") if procs.log_of(name).exists() else ""


def test_the_whole_application_runs_on_tls_redis(tls_redis, stack_env, procs, _db_engine):
    """A web instance, the io worker and beat with REDIS_URL=rediss+sentinel://...: a like is
    counted by the io worker (the broker), beat's task runs (RedBeat), the login limit answers
    429 (Flask-Limiter), /readyz is 200 (the app's own client)."""
    from sqlalchemy import text

    env = {**stack_env, "REDIS_URL": tls_redis.url(), "REDIS_TLS_CA_FILE": tls_redis.ca,
           "LOGIN_RATE_LIMIT": "3 per minute", "TRUSTED_PROXY_COUNT": "1",
           "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192", "ARGON2_PARALLELISM": "1"}
    celery = str(VENV_BIN / "celery")
    tag = uuid.uuid4().hex[:6]
    port = free_port()
    names = ["tls-gunicorn", "tls-io", "tls-beat"]
    try:
        procs.spawn("tls-gunicorn", web_command(port), env)
        procs.spawn("tls-io", [celery, "-A", "app.celery_utils", "worker", "--pool=gevent", "-c", "50",
                               "-Q", "io", "-n", f"io-{tag}@tls", *WORKER_OPTIONS, "--loglevel=INFO"], env)
        procs.spawn("tls-beat", [celery, "-A", "app.celery_utils", "beat", "-s",
                                 str(tls_redis.dir / "celerybeat-schedule"), "--loglevel=DEBUG"], env)
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: requests.get(base + "/readyz", timeout=3).status_code == 200, 90, 0.5,
                          ignore=(requests.RequestException,)), _log(procs, "tls-gunicorn")[-3000:]
        assert wait_until(lambda: " ready." in _log(procs, "tls-io"), 120, 0.5), _log(procs, "tls-io")[-3000:]

        api = API(base)
        _, author = api.register("ta")
        post = api.create("post", author)
        _, fan = api.register("tf")
        assert api.act(fan, "like", "post", post["id"]).status_code == 200

        def likes() -> int:
            with _db_engine.connect() as connection:
                return connection.execute(text("SELECT likes_count FROM posts WHERE id = :id"),
                                          {"id": post["id"]}).scalar()

        assert wait_until(lambda: likes() == 1, 30, 0.2), "the like was not counted by the io worker"

        def beat_task_ran() -> bool:
            sent = re.findall(r"app\.tasks\.flush_view_counts sent\. id->([0-9a-f-]+)",
                              _log(procs, "tls-beat"))
            return any(f"[{task_id}] succeeded" in _log(procs, "tls-io") for task_id in sent)

        assert wait_until(beat_task_ran, 45, 0.5), _log(procs, "tls-beat")[-3000:]
        address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
        codes = [api.post("/api/auth/login", json={"username": f"nobody{uuid.uuid4().hex[:8]}",
                                                   "password": "wrong-password"},
                          headers={"X-Forwarded-For": address}).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
    finally:
        procs.stop(*names, timeout=5)
