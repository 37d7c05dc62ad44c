"""Moderation end to end through nginx: a user reports a post, a moderator (named with the
runbook's CLI on a web host) removes it, and bans the reporter of spam, whose live connection
through the load balancer is closed and whose token is refused until the ban is lifted."""
from __future__ import annotations

import shlex

import pytest
import socketio
from conftest import LB_URL, Api, lab_session, wait_until

# docs/operations.md, "Roles": the application's CLI as the service user, with its env file.
CLI = ("systemd-run --wait --pipe --collect --quiet --property=User=synspirit "
       "--property=EnvironmentFile=/etc/synspirit/synspirit.env "
       "--property=WorkingDirectory=/var/lib/synspirit /opt/synspirit/venv/bin/flask --app app ")


@pytest.fixture(scope="module")
def moderator(inventory, lab_host) -> Api:
    """A new account made a moderator by an operator on the first web host."""
    mod = Api().register()
    web = lab_host(inventory["groups"]["web"][0])
    done = web.run(CLI + "users set-role " + shlex.quote(mod.user["username"]) + " moderator")
    assert done.rc == 0, done.stderr
    me = mod.request("GET", "/api/me")
    assert me.status_code == 200 and me.json()["role"] == "moderator", me.text
    return mod


def test_a_reported_post_removed_by_a_moderator_is_gone_but_for_staff(alice, bob, moderator):
    post_id = alice.create_post()
    r = bob.request("POST", "/api/reports",
                    json={"target_type": "post", "target_id": post_id, "reason": "spam"})
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    listed = moderator.request("GET", "/api/reports", params={"status": "open", "limit": 100})
    assert report_id in {item["id"] for item in listed.json()["items"]}

    r = moderator.request("POST", f"/api/reports/{report_id}/resolve", json={"action": "remove"})
    assert r.status_code == 200 and r.json()["status"] == "removed", r.text
    anonymous = Api()
    # Every web instance's cache forgets it (the item's version in Redis), whichever one answers.
    for _ in range(6):
        assert anonymous.request("GET", f"/api/posts/{post_id}").status_code == 404
    shown = moderator.request("GET", f"/api/posts/{post_id}")
    assert shown.status_code == 200 and shown.json()["removed"] is True
    listed = anonymous.request("GET", "/api/posts", params={"per_page": 100}).json()["items"]
    assert post_id not in {item["id"] for item in listed}
    notes = alice.request("GET", "/api/notifications").json()["items"]
    assert any(n["type"] == "moderation" and n["target_id"] == post_id for n in notes)


def test_a_banned_users_connection_is_closed_and_its_token_refused(moderator):
    spammer = Api().register()
    client = socketio.Client(ssl_verify=False, http_session=lab_session(), reconnection=False)
    client.connect(LB_URL, transports=["websocket"], auth={"token": spammer.token},
                   wait_timeout=10)
    try:
        r = moderator.request("POST", f"/api/users/{spammer.user['username']}/ban",
                              json={"reason": "spam"})
        assert r.status_code == 200, r.text
        assert wait_until(lambda: not client.connected, 10, 0.1)
        refused = spammer.request("GET", "/api/me")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "banned"
    finally:
        client.disconnect()
    r = moderator.request("DELETE", f"/api/users/{spammer.user['username']}/ban")
    assert r.status_code == 204
    assert spammer.request("GET", "/api/me").status_code == 200
    log = moderator.request("GET", "/api/moderation/log", params={"limit": 20}).json()["items"]
    assert [e["action"] for e in log if e["target_id"] == spammer.user["id"]][:2] == [
        "unban", "ban"]
