"""Live counts through nginx: a Socket.IO client subscribed to a post gets `counts` after a like,
over websocket and over long-polling, with several web instances behind the load balancer."""
import queue

import pytest
import socketio
from conftest import LB_URL, lab_session


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_subscriber_receives_counts_after_a_like(alice, bob, transport):
    """A subscriber to a post receives a `counts` event with the new like count."""
    post_id = alice.create_post()
    events: queue.Queue = queue.Queue()
    client = socketio.Client(ssl_verify=False, http_session=lab_session(), reconnection=False)
    client.on("counts", events.put)
    client.connect(LB_URL, transports=[transport], auth={"token": alice.token}, wait_timeout=10)
    try:
        assert client.transport() == transport
        ack = client.call("subscribe", {"target_type": "post", "target_id": post_id}, timeout=10)
        assert ack == {"ok": True}
        bob.like(post_id)
        while True:
            event = events.get(timeout=10)
            if event.get("target_type") == "post" and event.get("target_id") == post_id:
                break
        assert event["counts"]["likes"] == 1
    finally:
        client.disconnect()


def test_many_polling_clients_keep_their_sessions(alice):
    """Several long-polling clients in a row all connect and get acks (no "Invalid session")."""
    post_id = alice.create_post()
    for _ in range(5):
        client = socketio.Client(ssl_verify=False, http_session=lab_session(), reconnection=False)
        client.connect(LB_URL, transports=["polling"], wait_timeout=10)
        try:
            for _ in range(3):
                ack = client.call("subscribe", {"target_type": "post", "target_id": post_id},
                                  timeout=10)
                assert ack == {"ok": True}
        finally:
            client.disconnect()
