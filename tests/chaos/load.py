"""Steady mixed load for the chaos scenarios, and the bookkeeping that proves nothing was lost.

Users (threads) like/unlike, collect/uncollect, share, comment and view a few posts and an
article through the load balancer, while Socket.IO clients stay subscribed to them. Every
answer is recorded: what a 2xx acknowledged is the state the database must hold afterwards.

- like/collect (and their undo) and share are idempotent: a request that failed or timed out
  is retried (as a client would) until it gets a 2xx, so each user's final state per target is
  known exactly; a failure is still counted as a failed request with its status.
- a comment is not idempotent: it is sent once; a 2xx gives the id that must exist afterwards,
  a failure with unknown outcome (timeout, connection cut) may or may not have created one.
- a view (GET of the item) that answered 2xx must be counted in `views`.
Each user is driven by one thread only, so its actions are ordered.
"""
from __future__ import annotations

import collections
import http.client
import random
import secrets
import threading
import time

import requests
import socketio
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REQUEST_TIMEOUT = 15  # s; nginx's own upstream timeouts are below this
RETRY_DEADLINE = 120  # s an idempotent action is retried before its outcome counts as unknown


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy / CA bundle from the environment: lab traffic only
    s.verify = False  # the lab's certificate is self-signed
    return s


class Stats:
    """Thread-safe tallies of one load run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = collections.Counter()  # kind -> 2xx count
        self.failed = collections.Counter()  # status (or error name) -> count
        self.failed_by_kind = collections.Counter()
        self.first_failure: float | None = None
        self.last_failure: float | None = None
        self.requests = 0
        # Every failed request (wall-clock start, seconds taken, what, why): to find it in
        # nginx's access log and the hosts' journals afterwards.
        self.failures: list[dict] = []
        # Requests sent on a kept-alive connection that nginx closed at that very moment (it
        # closes idle client connections when it reloads, e.g. to drain a host): nothing was
        # received, so the request is sent again at once on a new connection, as browsers
        # and most HTTP clients do. Counted here, not as failed; a second failure counts.
        self.stale_connection_retries: list[dict] = []

    def ok(self, kind: str) -> None:
        with self.lock:
            self.acked[kind] += 1
            self.requests += 1

    def fail(self, kind: str, status: str, detail: dict | None = None) -> None:
        now = time.monotonic()
        with self.lock:
            if detail is not None:
                self.failures.append({"kind": kind, "status": status, **detail})
            self.failed[status] += 1
            self.failed_by_kind[f"{kind}:{status}"] += 1
            self.requests += 1
            self.first_failure = self.first_failure or now
            self.last_failure = now


class User:
    def __init__(self, base: str):
        self.base = base
        self.http = session()
        self.id = None
        self.token = None

    def request(self, method: str, path: str, **kw) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=REQUEST_TIMEOUT, **kw)

    def register(self) -> User:
        name = f"chaos_{secrets.token_hex(5)}"
        for attempt in range(30):  # nginx limit_req on /api/auth/ may answer 429
            r = self.request("POST", "/api/auth/register",
                             json={"username": name, "password": f"pw-{secrets.token_hex(8)}"})
            if r.status_code == 201:
                body = r.json()
                self.id, self.token = body["user"]["id"], body["token"]
                self.http.headers["Authorization"] = f"Bearer {self.token}"
                return self
            time.sleep(0.3 * (attempt + 1))
        raise RuntimeError(f"register failed: {r.status_code} {r.text[:200]}")


def make_targets(author: User, n_posts: int = 3) -> list[tuple[str, int]]:
    targets = []
    for i in range(n_posts):
        r = author.request("POST", "/api/posts", json={"title": f"Chaos post {i}",
                                                       "content": "Under fault injection."})
        r.raise_for_status()
        targets.append(("post", r.json()["id"]))
    r = author.request("POST", "/api/articles", json={"title": "Chaos article",
                                                      "content": "# Chaos\n\nArticle *under* load."})
    r.raise_for_status()
    targets.append(("article", r.json()["id"]))
    return targets


def _closed_before_any_answer(e: BaseException) -> bool:
    """The server closed the (kept-alive) connection without a byte of answer: a clean close
    (RemoteDisconnected), or a reset when the request was written after the close (on a busy
    machine the close reaches the client after its send; CI saw one in a rolling deploy)."""
    while e is not None:
        if isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            return True
        e = e.__cause__ or e.__context__ or (e.args[0] if e.args and isinstance(e.args[0], BaseException)
                                             else (e.args[1] if len(e.args) > 1
                                                   and isinstance(e.args[1], BaseException) else None))
    return False


class Load:
    """N user threads acting on `targets` until stop(); then `expected()` is the truth."""

    def __init__(self, base: str, users: list[User], targets: list[tuple[str, int]],
                 threads: int = 6, pause: float = 0.05, seed: int = 7):
        self.base, self.users, self.targets = base, users, targets
        self.threads_n, self.pause = threads, pause
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.state: dict[tuple, bool] = {}  # (user_id, action, kind, id) -> acknowledged active
        self.unknown: set[tuple] = set()  # keys whose final outcome is unknown (retry deadline)
        self.comments: dict[tuple[str, int], set[int]] = collections.defaultdict(set)
        self.comment_unknown = 0  # comment posts with an unknown outcome
        self.views: collections.Counter = collections.Counter()  # (kind, id) -> 2xx GETs
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    # -------------------------------------------------------------- one request
    def _send(self, user: User, kind: str, method: str, path: str, **kw):
        wall, t = time.time(), time.monotonic()

        def detail(error: str = "") -> dict:
            return {"start": time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z",
                    "took_s": round(time.monotonic() - t, 2), "request": f"{method} {path}",
                    "user": user.id, **({"error": error[:200]} if error else {})}

        try:
            try:
                r = user.request(method, path, **kw)
            except requests.ConnectionError as e:
                if not _closed_before_any_answer(e) or time.monotonic() - t > 1:
                    raise
                with self.stats.lock:
                    self.stats.stale_connection_retries.append(detail(repr(e)))
                r = user.request(method, path, **kw)
        except requests.Timeout as e:
            self.stats.fail(kind, "timeout", detail(repr(e)))
            return None
        except requests.ConnectionError as e:
            self.stats.fail(kind, "conn-error", detail(repr(e)))
            return None
        if 200 <= r.status_code < 300:
            self.stats.ok(kind)
            return r
        self.stats.fail(kind, str(r.status_code), detail())
        return r

    def _until_ok(self, user: User, kind: str, method: str, path: str, body: dict) -> bool:
        """An idempotent action, retried until acknowledged (bounded)."""
        deadline = time.monotonic() + RETRY_DEADLINE
        while True:
            r = self._send(user, kind, method, path, json=body)
            if r is not None and 200 <= r.status_code < 300:
                return True
            if r is not None and r.status_code < 500 and r.status_code != 429:
                raise RuntimeError(f"{kind} {body}: {r.status_code} {r.text[:200]}")
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)

    # -------------------------------------------------------------- one step of a user
    def step(self, user: User, rng: random.Random) -> None:
        kind, tid = rng.choice(self.targets)
        roll = rng.random()
        if roll < 0.55:
            action = "like" if roll < 0.3 else ("collect" if roll < 0.45 else "share")
            key = (user.id, action, kind, tid)
            if key in self.unknown:
                return
            active = self.state.get(key, False)
            if action == "share" and active:
                return
            method = "DELETE" if active else "POST"
            name = f"un{action}" if active else action
            body = {"action": action, "target_type": kind, "target_id": tid}
            if self._until_ok(user, name, method, "/api/actions", body):
                with self.lock:
                    self.state[key] = not active
            else:
                with self.lock:
                    self.unknown.add(key)
        elif roll < 0.65:
            r = self._send(user, "comment", "POST", f"/api/{kind}s/{tid}/comments",
                           json={"content": f"chaos {secrets.token_hex(4)}"})
            with self.lock:
                if r is not None and r.status_code == 201:
                    self.comments[(kind, tid)].add(r.json()["id"])
                elif r is None or r.status_code >= 500:
                    self.comment_unknown += 1
        else:
            r = self._send(user, "view", "GET", f"/api/{kind}s/{tid}")
            if r is not None and r.status_code == 200:
                with self.lock:
                    self.views[(kind, tid)] += 1

    def _run(self, users: list[User], seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop_event.is_set():
            self.step(rng.choice(users), rng)
            time.sleep(self.pause)

    def start(self) -> None:
        for i in range(self.threads_n):
            mine = self.users[i::self.threads_n]
            t = threading.Thread(target=self._run, args=(mine, self.rng.random()), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(RETRY_DEADLINE + REQUEST_TIMEOUT + 5)

    # -------------------------------------------------------------- the truth afterwards
    def expected_rows(self) -> set[tuple]:
        """(user_id, action, kind, id) of every reaction that must exist."""
        return {k for k, v in self.state.items() if v and k not in self.unknown}

    def expected_absent(self) -> set[tuple]:
        return {k for k, v in self.state.items() if not v and k not in self.unknown}

    def acknowledged_writes(self) -> int:
        a = self.stats.acked
        return sum(v for k, v in a.items() if k != "view")


class Subscribers:
    """Socket.IO clients subscribed to the targets; they reconnect and resubscribe by
    themselves. Records every gap between losing the connection and being subscribed again."""

    def __init__(self, base: str, targets: list[tuple[str, int]], n: int = 4):
        self.base, self.targets, self.n = base, targets, n
        self.clients: list[socketio.Client] = []
        self.lock = threading.Lock()
        self.down_since: dict[int, float] = {}
        self.gaps: list[float] = []
        self.events = 0
        self.disconnects = 0
        self.errors: list[str] = []

    def _client(self, i: int) -> socketio.Client:
        c = socketio.Client(ssl_verify=False, http_session=session(), reconnection=True,
                            reconnection_delay=0.5, reconnection_delay_max=2,
                            randomization_factor=0.2)

        def subscribed(*ack):
            with self.lock:
                since = self.down_since.pop(i, None)
                if since is not None:
                    self.gaps.append(time.monotonic() - since)

        @c.event
        def connect():
            # Resubscribe after every (re)connection: subscriptions live in the server's session.
            for n, (kind, tid) in enumerate(self.targets):
                last = n == len(self.targets) - 1
                c.emit("subscribe", {"target_type": kind, "target_id": tid},
                       callback=subscribed if last else None)

        @c.event
        def disconnect(*reason):
            with self.lock:
                self.disconnects += 1
                self.down_since.setdefault(i, time.monotonic())

        @c.on("counts")
        def counts(data):
            with self.lock:
                self.events += 1

        return c

    def start(self) -> None:
        for i in range(self.n):
            c = self._client(i)
            c.connect(self.base, transports=["websocket"], wait_timeout=15)
            self.clients.append(c)

    def still_down(self) -> list[float]:
        now = time.monotonic()
        with self.lock:
            return [now - t for t in self.down_since.values()]

    def stop(self) -> None:
        for c in self.clients:
            try:
                c.disconnect()
            except Exception as e:  # noqa: BLE001 - report, keep closing the others
                self.errors.append(f"{type(e).__name__}: {e}")
