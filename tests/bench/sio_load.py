"""Socket.IO load client for `make bench`: many websocket connections on gevent greenlets.

Speaks Engine.IO v4 / Socket.IO v5 over plain websockets (websocket-client, made cooperative
by gevent's monkey-patching), so one process can hold thousands of connections: each one is a
greenlet that answers the server's pings. Loopback only (the URL must be 127.0.0.1/localhost).

  sio_load.py hold   --url http://127.0.0.1:PORT --n 10000 --hold 10
      open N connections (at most --concurrency handshakes at once), print
      `{"event": "open", ...}` when all are open, keep them for --hold seconds (answering
      pings), print `{"event": "done", ...}` and close them.
  sio_load.py fanout --url ... --n 1000 --target-id ID --tokens FILE --rounds 10
      open N connections subscribed to post ID; each round one user (a token from FILE,
      one per line) likes the post over HTTP; every subscriber records when the `counts`
      event carrying the new like count arrives. Prints the delivery latencies (from just
      before the HTTP call) as `{"event": "fanout", ...}`.

  sio_load.py fanout --url https://LAB_ADDRESS --lab --also-subscribe ID,ID --go-file F ...
      the same through a lab's nginx (lab_mixed.py): --lab allows the lab's network
      10.77.0.0/16 and its own CA (not verified); each connection also subscribes to one of
      the --also-subscribe posts; `{"event": "subscribed", ...}` is printed once every
      connection is subscribed, and the rounds start when the file --go-file exists.

Output: one JSON object per line on stdout. Bounded in time: every wait has a deadline.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.pool  # noqa: E402
import websocket  # noqa: E402  (websocket-client)


def out(**obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


LAB_NETWORK = ipaddress.ip_network("10.77.0.0/16")  # tests/lab: 10.77.N.0/24 for lab N
ALLOW_LAB = False  # --lab
INSECURE = ssl._create_unverified_context()  # the lab's self-signed CA, lab addresses only


def check_loopback(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return parts
    if ALLOW_LAB:
        try:
            if ipaddress.ip_address(parts.hostname) in LAB_NETWORK:
                return parts
        except ValueError:
            pass
    raise SystemExit(f"refusing a URL outside loopback{' and the lab' if ALLOW_LAB else ''}: {url}")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Conn:
    """One Socket.IO client connection on the default namespace."""

    def __init__(self, ws_url: str, origin: str):
        self.ws_url, self.origin = ws_url, origin
        self.ws = None
        self.acks: dict[int, gevent.event.AsyncResult] = {}
        self.next_ack = 1
        self.on_event = None  # callable(name, data, recv_time)
        self.closed = False
        self.error = None

    def open(self, timeout: float = 30.0) -> None:
        self.ws = websocket.create_connection(self.ws_url, timeout=timeout, origin=self.origin,
                                              enable_multithread=False,
                                              sslopt={"cert_reqs": ssl.CERT_NONE})
        first = self.ws.recv()  # Engine.IO open packet: 0{"sid":...}
        if not first.startswith("0"):
            raise RuntimeError(f"unexpected open packet {first[:60]!r}")
        self.ws.send("40")  # Socket.IO connect to "/" (anonymous)
        while True:
            msg = self.ws.recv()
            if msg == "2":
                self.ws.send("3")
                continue
            if msg.startswith("40"):
                break
            raise RuntimeError(f"connect refused: {msg[:120]!r}")
        self.ws.settimeout(None)

    def loop(self) -> None:
        try:
            while True:
                msg = self.ws.recv()
                now = time.monotonic()
                if not msg:
                    break
                if msg == "2":  # ping
                    self.ws.send("3")
                elif msg.startswith("42"):
                    body = msg[2:]
                    i = 0
                    while i < len(body) and body[i].isdigit():
                        i += 1
                    name, *args = json.loads(body[i:])
                    if self.on_event:
                        self.on_event(name, args[0] if args else None, now)
                elif msg.startswith("43"):
                    body = msg[2:]
                    i = 0
                    while i < len(body) and body[i].isdigit():
                        i += 1
                    ack_id = int(body[:i])
                    res = self.acks.pop(ack_id, None)
                    if res is not None:
                        args = json.loads(body[i:])
                        res.set(args[0] if args else None)
                elif msg.startswith("1") or msg.startswith("41"):
                    break
        except Exception as e:  # noqa: BLE001 - a closed socket ends the greenlet
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.closed = True

    def call(self, event: str, data, timeout: float = 30.0):
        ack_id = self.next_ack
        self.next_ack += 1
        res = gevent.event.AsyncResult()
        self.acks[ack_id] = res
        self.ws.send(f"42{ack_id}" + json.dumps([event, data]))
        return res.get(timeout=timeout)

    def close(self) -> None:
        # No closing handshake: thousands of sequential close() calls would each wait for
        # the server's close frame. The server sees the TCP close.
        with contextlib.suppress(Exception):
            self.ws.shutdown()


def open_many(base: str, n: int, concurrency: int, deadline: float) -> tuple[list[Conn], list]:
    parts = check_loopback(base)
    ws = "wss" if parts.scheme == "https" else "ws"
    ws_url = f"{ws}://{parts.netloc}/socket.io/?EIO=4&transport=websocket"
    origin = f"{parts.scheme}://{parts.netloc}"
    conns: list[Conn] = []
    errors: list[str] = []
    pool = gevent.pool.Pool(concurrency)

    def one():
        if time.monotonic() > deadline:
            errors.append("deadline")
            return
        c = Conn(ws_url, origin)
        try:
            c.open(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}"[:200])
            c.close()
            return
        conns.append(c)
        gevent.spawn(c.loop)

    for _ in range(n):
        pool.spawn(one)
    pool.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    pool.kill()
    return conns, errors


def cmd_hold(a) -> None:
    t0 = time.monotonic()
    conns, errors = open_many(a.url, a.n, a.concurrency, t0 + a.open_timeout)
    t_open = time.monotonic() - t0
    out(event="open", opened=len(conns), failed=len(errors), seconds=round(t_open, 3),
        errors=sorted(set(errors))[:5])
    gevent.sleep(a.hold)
    alive = sum(1 for c in conns if not c.closed)
    out(event="done", opened=len(conns), alive_after_hold=alive, hold=a.hold)
    for c in conns:
        c.close()


def cmd_fanout(a) -> None:
    tokens = [t.strip() for t in open(a.tokens) if t.strip()]
    rounds = min(a.rounds, len(tokens))
    t0 = time.monotonic()
    conns, errors = open_many(a.url, a.n, a.concurrency, t0 + a.open_timeout)
    conn_failed = len(errors)
    # received[i] = {likes: monotonic time} for connection i
    received: list[dict[int, float]] = [dict() for _ in conns]
    for i, c in enumerate(conns):
        def handler(name, data, now, i=i):
            if (name == "counts" and isinstance(data, dict) and data.get("target_type") == "post"
                    and data.get("target_id") == a.target_id):
                likes = data["counts"]["likes"]
                received[i].setdefault(likes, now)
        c.on_event = handler
    sub_pool = gevent.pool.Pool(a.concurrency)
    sub_ok: set[int] = set()  # indexes of subscribed connections

    also = [int(x) for x in a.also_subscribe.split(",") if x] if a.also_subscribe else []

    def sub(i, c):
        try:
            ack = c.call("subscribe", {"target_type": "post", "target_id": a.target_id})
            if isinstance(ack, dict) and ack.get("ok"):
                sub_ok.add(i)
            else:
                errors.append(f"subscribe: {ack!r}"[:200])
            if also:
                ack = c.call("subscribe", {"target_type": "post", "target_id": also[i % len(also)]})
                if not (isinstance(ack, dict) and ack.get("ok")):
                    errors.append(f"subscribe (also): {ack!r}"[:200])
        except Exception as e:  # noqa: BLE001
            errors.append(f"subscribe: {type(e).__name__}: {e}"[:200])

    for i, c in enumerate(conns):
        sub_pool.spawn(sub, i, c)
    sub_pool.join(timeout=a.open_timeout)
    subscribed = len(sub_ok)
    if a.go_file:
        out(event="subscribed", connections=len(conns), failed=conn_failed, subscribed=subscribed,
            errors=sorted(set(errors))[:5])
        deadline = time.monotonic() + a.open_timeout
        while not os.path.exists(a.go_file) and time.monotonic() < deadline:
            gevent.sleep(0.05)
    lat: list[float] = []
    missing = 0
    per_round = []
    for r in range(rounds):
        expect = r + 1
        req = urllib.request.Request(
            a.url + "/api/actions", method="POST",
            data=json.dumps({"action": "like", "target_type": "post",
                             "target_id": a.target_id}).encode(),
            headers={"Authorization": f"Bearer {tokens[r]}", "Content-Type": "application/json"})
        start = time.monotonic()
        with urllib.request.urlopen(req, timeout=10,
                                    context=INSECURE if a.url.startswith("https:") else None) as resp:
            resp.read()
        deadline = start + a.round_timeout
        while time.monotonic() < deadline:
            if all(expect in received[i] for i in sub_ok):
                break
            gevent.sleep(0.01)
        got = [received[i][expect] - start for i in sub_ok if expect in received[i]]
        missing += subscribed - len(got)
        lat.extend(got)
        per_round.append({"p50": percentile(got, 50), "max": max(got) if got else None,
                          "delivered": len(got)})
        gevent.sleep(a.gap)
    out(event="fanout", connections=len(conns), failed=conn_failed, subscribed=subscribed,
        rounds=rounds, deliveries=len(lat), missing=missing,
        p50=percentile(lat, 50), p90=percentile(lat, 90), p99=percentile(lat, 99),
        max=max(lat) if lat else None, per_round=per_round,
        errors=sorted(set(errors))[:5])
    for c in conns:
        c.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["hold", "fanout"])
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    p.add_argument("--open-timeout", type=float, default=120.0)
    p.add_argument("--hold", type=float, default=10.0)
    p.add_argument("--target-id", type=int)
    p.add_argument("--tokens")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--round-timeout", type=float, default=5.0)
    p.add_argument("--gap", type=float, default=0.5, help="seconds between fan-out rounds")
    p.add_argument("--lab", action="store_true",
                   help="also allow the lab's addresses (10.77.0.0/16), https with its own CA")
    p.add_argument("--also-subscribe", help="fanout: post ids, one more subscription each")
    p.add_argument("--go-file", help="fanout: print `subscribed`, start the rounds once this exists")
    a = p.parse_args()
    global ALLOW_LAB
    ALLOW_LAB = a.lab
    check_loopback(a.url)
    out(event="start", nofile=raise_nofile())
    (cmd_hold if a.mode == "hold" else cmd_fanout)(a)


if __name__ == "__main__":
    main()
