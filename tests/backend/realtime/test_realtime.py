"""Socket.IO with a real python-socketio client against the real gunicorn (gevent-websocket
worker): events emitted by Celery workers reach subscribers through the Redis message queue."""
from __future__ import annotations

import queue

import pytest
import socketio

pytestmark = pytest.mark.usefixtures("celery_workers")

TRANSPORTS = ["websocket", "polling"]


class Listener:
    """A connected client that records every event it receives."""

    def __init__(self, url: str, transport: str, token: str | None = None):
        self.events: queue.Queue = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        for name in ("counts", "comment", "notification", "rendered"):
            self.sio.on(name, lambda data, name=name: self.events.put((name, data)))
        self.sio.connect(url, transports=[transport], auth={"token": token} if token else None,
                         wait_timeout=10)

    def call(self, event: str, data=None):
        return self.sio.call(event, data, timeout=10)

    def next(self, name: str, match=lambda d: True, timeout: float = 5.0):
        """The next `name` event whose payload matches, or None after timeout."""
        try:
            while True:
                got, data = self.events.get(timeout=timeout)
                if got == name and match(data):
                    return data
        except queue.Empty:
            return None

    def close(self):
        self.sio.disconnect()


@pytest.fixture
def listen(server):
    made = []

    def make(transport="websocket", token=None):
        listener = Listener(server, transport, token)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_like_over_http_reaches_subscribers_as_counts(api, listen, transport):
    """A subscriber receives `counts` emitted by the io worker after a like made over HTTP."""
    _, author = api.register()
    _, fan = api.register()
    post = api.create("post", author)
    client = listen(transport)
    assert client.call("subscribe", {"target_type": "post", "target_id": post["id"]}) == {"ok": True}
    assert api.act(fan, "like", "post", post["id"]).status_code == 200
    event = client.next("counts", lambda d: d["target_id"] == post["id"] and d["counts"]["likes"])
    assert event == {"target_type": "post", "target_id": post["id"],
                     "counts": {"views": 0, "likes": 1, "collects": 0, "shares": 0,
                                "comments": 0}}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_new_comments_reach_subscribers(api, listen, transport):
    """A subscriber of an article receives each new comment."""
    _, author = api.register()
    _, reader = api.register()
    article = api.create("article", author)
    client = listen(transport)
    assert client.call("subscribe", {"target_type": "article", "target_id": article["id"]})["ok"]
    created = api.post(f"/api/articles/{article['id']}/comments", token=reader,
                       json={"content": "well said"}).json()
    event = client.next("comment")
    assert event == {"target_type": "article", "target_id": article["id"], "comment": created}


def test_unsubscribed_clients_stop_receiving(api, listen):
    """After unsubscribe, counts of that post no longer arrive."""
    _, author = api.register()
    _, fan = api.register()
    post = api.create("post", author)
    client = listen()
    target = {"target_type": "post", "target_id": post["id"]}
    assert client.call("subscribe", target) == {"ok": True}
    assert client.call("unsubscribe", target) == {"ok": True}
    api.act(fan, "like", "post", post["id"])
    assert client.next("counts", timeout=2.0) is None


def test_authors_are_notified_of_actions_on_their_content_only(api, listen):
    """The author's connection gets `notification`s for likes and comments; another signed-in
    user gets none of them."""
    author_user, author = api.register()
    fan_user, fan = api.register()
    _, bystander = api.register()
    post = api.create("post", author)
    author_client = listen(token=author)
    bystander_client = listen(token=bystander)
    api.act(fan, "like", "post", post["id"])
    api.post(f"/api/posts/{post['id']}/comments", token=fan, json={"content": "hi"})
    like = author_client.next("notification", lambda d: d["kind"] == "like")
    comment = author_client.next("notification", lambda d: d["kind"] == "comment")
    # What clients of the first release read is still there (`kind`, `actor`, `target_*`).
    assert like.items() >= {"kind": "like", "actor": {"id": fan_user["id"],
                                                      "username": fan_user["username"]},
                            "target_type": "post", "target_id": post["id"]}.items()
    assert comment["actor"]["id"] == fan_user["id"] and comment["target_id"] == post["id"]
    assert bystander_client.next("notification", timeout=1.5) is None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_pushed_notification_is_the_stored_one(api, listen, transport):
    """The live `notification` carries the stored notification: the same id and fields as
    GET /api/notifications lists, plus `kind` (and `comment` for a comment)."""
    _, author = api.register()
    _, fan = api.register()
    post = api.create("post", author)
    client = listen(transport, token=author)
    assert api.act(fan, "like", "post", post["id"]).status_code == 200
    like = client.next("notification", lambda d: d["kind"] == "like")
    created = api.post(f"/api/posts/{post['id']}/comments", token=fan,
                       json={"content": "stored too"}).json()
    comment = client.next("notification", lambda d: d["kind"] == "comment")
    assert like is not None and comment is not None
    listed = api.get("/api/notifications", token=author).json()["items"]
    stored_comment, stored_like = listed
    assert like["id"] == stored_like["id"] and comment["id"] == stored_comment["id"]
    assert like == {**stored_like, "kind": "like"}
    assert comment == {**stored_comment, "kind": "comment", "comment": created}
    assert comment["type"] == "comment" and comment["comment_id"] == created["id"]
    # Like, unlike, like again: nothing more is pushed, nothing more is stored.
    api.act(fan, "like", "post", post["id"], undo=True)
    api.act(fan, "like", "post", post["id"])
    assert client.next("notification", timeout=1.5) is None
    assert len(api.get("/api/notifications", token=author).json()["items"]) == 2


def test_like_unlike_like_notifies_once(api, listen):
    """Undoing and redoing a like (or a collect) tells the author nothing new: at most one
    notification per actor, kind and target. Another kind, or another actor, still notifies."""
    _, author = api.register()
    fan_user, fan = api.register()
    other_user, other = api.register()
    post = api.create("post", author)
    client = listen(token=author)
    for _ in range(3):
        assert api.act(fan, "like", "post", post["id"]).status_code == 200
        assert api.act(fan, "like", "post", post["id"], undo=True).status_code == 200
    api.act(fan, "collect", "post", post["id"])
    api.act(other, "like", "post", post["id"])
    got = []
    while (event := client.next("notification", timeout=2.0)) is not None:
        got.append((event["kind"], event["actor"]["id"]))
    assert sorted(got) == sorted([("like", fan_user["id"]), ("collect", fan_user["id"]),
                                  ("like", other_user["id"])])


def test_own_actions_do_not_notify(api, listen):
    """Liking one's own post is no news to oneself."""
    _, author = api.register()
    post = api.create("post", author)
    client = listen(token=author)
    api.act(author, "like", "post", post["id"])
    assert client.next("notification", timeout=1.5) is None


@pytest.mark.parametrize("token", ["not-a-token", "", 12345])
def test_invalid_tokens_are_refused(server, token):
    """A connection with an invalid token is refused."""
    sio = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(server, transports=["websocket"], auth={"token": token}, wait_timeout=5)


@pytest.mark.parametrize("payload, error", [
    (None, "JSON object"),
    ("post:1", "JSON object"),
    ({"target_type": "user", "target_id": 1}, "invalid input"),
    ({"target_type": "post", "target_id": "1"}, "invalid input"),
    ({"target_type": "post", "target_id": -3}, "invalid input"),
    ({"target_type": "post", "target_id": 2**40}, "invalid input"),
    ({"target_type": "post", "target_id": 2_000_000_000}, "not found"),
])
def test_malformed_subscriptions_get_an_error_ack_and_keep_the_connection(
        api, listen, payload, error):
    """A malformed subscribe gets {"ok": false, "error"} and the same connection still works."""
    client = listen()
    ack = client.call("subscribe", payload)
    assert ack["ok"] is False and error in ack["error"]
    _, author = api.register()
    post = api.create("post", author)
    assert client.call("subscribe", {"target_type": "post", "target_id": post["id"]}) == {"ok": True}


def _client_from(origin: str, transport: str) -> socketio.Client:
    # The websocket client sends its own Origin header unless told which one to send.
    if transport == "websocket":
        return socketio.Client(reconnection=False, websocket_extra_options={"origin": origin})
    return socketio.Client(reconnection=False)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_only_the_configured_origins_may_connect(server, transport):
    """By default only the server's own origin (or a client sending none) may connect; a page
    on another origin is refused."""
    foreign = _client_from("http://evil.example", transport)
    # Refused at the handshake; python-engineio's websocket-only client reports the refusal
    # as an empty packet (ValueError) rather than a ConnectionError.
    with pytest.raises((socketio.exceptions.ConnectionError, ValueError)):
        foreign.connect(server, transports=[transport], wait_timeout=5,
                        headers={} if transport == "websocket" else {"Origin": "http://evil.example"})
    assert not foreign.connected
    own = _client_from(server, transport)
    own.connect(server, transports=[transport], wait_timeout=5,
                headers={} if transport == "websocket" else {"Origin": server})
    assert own.connected
    own.disconnect()
