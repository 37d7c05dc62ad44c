"""Small network probes run ON a lab host with its own python3 (no client packages needed):
they speak just enough of the Redis and PostgreSQL protocols to show what a client gets."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

# The lab's Redis and Sentinel speak TLS only (synspirit_redis_tls), with the deployment's CA.
REDIS_TLS_CA = "/etc/ssl/synspirit/ca.crt"

_REDIS = r'''
import json, socket, ssl, sys
a = json.loads(sys.argv[1])
s = socket.create_connection((a["host"], a["port"]), 5)
if a["ca"]:  # TLS, the server's certificate checked against the CA and the address
    s = ssl.create_default_context(cafile=a["ca"]).wrap_socket(s, server_hostname=a["host"])
f = s.makefile("rb")
def send(args):
    parts = [b"*%d\r\n" % len(args)]
    for x in args:
        x = x.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(x), x))
    s.sendall(b"".join(parts))
def read():
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+": return rest
    if kind == b"-": return {"error": rest}
    if kind == b":": return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    return {"unexpected": line.decode(errors="replace")}
replies = []
for command in a["commands"]:
    send(command)
    replies.append(read())
print(json.dumps(replies))
'''

_POSTGRES = r'''
import json, socket, ssl, struct, sys
a = json.loads(sys.argv[1])
s = socket.create_connection((a["host"], a["port"]), 5)
if a["tls"]:  # SSLRequest; the server answers S (go on in TLS) or N
    s.sendall(struct.pack("!ii", 8, 80877103))
    if s.recv(1) != b"S":
        print(json.dumps({"tls": "refused"}))
        sys.exit()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    s = context.wrap_socket(s)
params = b"user\0" + a["user"].encode() + b"\0database\0" + a["database"].encode() + b"\0\0"
s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
def exactly(n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk: break
        data += chunk
    return data
kind = exactly(1)
body = exactly(struct.unpack("!i", exactly(4))[0] - 4)
if kind == b"R":
    code = struct.unpack("!i", body[:4])[0]
    print(json.dumps({"authentication": code,
                      "mechanisms": [m.decode() for m in body[4:].split(b"\0") if m]}))
elif kind == b"E":
    fields = {f[:1].decode(): f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
    print(json.dumps({"error": fields}))
else:
    print(json.dumps({"unexpected": kind.decode(errors="replace")}))
'''


def redis(host, address: str, port: int, *commands: list[str], ca: str | None = REDIS_TLS_CA) -> list:
    """Send Redis commands from `host` to address:port, over TLS checked against `ca` (None:
    plain TCP); the decoded replies, in order."""
    args = json.dumps({"host": address, "port": port, "ca": ca, "commands": [list(c) for c in commands]})
    return json.loads(host.check_output("python3 -c %s %s", _REDIS, args))


def redis_login(url: str) -> list[str]:
    """The AUTH command for the credentials of a redis:// URL."""
    parts = urlsplit(url)
    if parts.username:
        return ["AUTH", parts.username, parts.password or ""]
    return ["AUTH", parts.password or ""]


def postgres_startup(host, address: str, user: str, database: str, port: int = 5432,
                     tls: bool = True) -> dict:
    """Open a PostgreSQL session from `host` as `user`, in TLS (as libpq does by default) or in
    plain text: the server's first answer, decoded ({"authentication": 10, "mechanisms":
    ["SCRAM-SHA-256"]} or {"error": {"C": ..., "M": ...}})."""
    args = json.dumps({"host": address, "port": port, "user": user, "database": database, "tls": tls})
    return json.loads(host.check_output("python3 -c %s %s", _POSTGRES, args))


_CONNECT = r'''
import json, socket, sys
a = json.loads(sys.argv[1])
try:
    socket.create_connection((a["host"], a["port"]), a["timeout"]).close()
    print(json.dumps("open"))
except ConnectionRefusedError:
    print(json.dumps("refused"))
except OSError:
    print(json.dumps("timeout"))
'''


def tcp_connect(host, address: str, port: int, timeout: float = 1.5) -> str:
    """Open a TCP connection from `host` to address:port: "open", "refused" (a RST: nothing
    listens) or "timeout" (dropped on the way, e.g. by a firewall). The kernel answers a SYN on
    the lab's bridge within milliseconds whatever the load, so 1.5 s tells a dropped packet
    from an answer; each dropped probe costs the whole timeout (3 s made the firewall and
    cluster-port checks about 5 of the lab suite's 23 minutes)."""
    args = json.dumps({"host": address, "port": port, "timeout": timeout})
    return json.loads(host.check_output("python3 -c %s %s", _CONNECT, args))
