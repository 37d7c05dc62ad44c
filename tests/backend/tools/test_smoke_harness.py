"""The test harness itself: real gunicorn answers, both Celery pools answer a ping, beat runs,
and the fixtures point at the same fresh database."""
from __future__ import annotations

import requests
from sqlalchemy import text


def test_gunicorn_answers_healthz_and_readyz(server):
    assert requests.get(server + "/healthz", timeout=5).status_code == 200
    ready = requests.get(server + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text


def test_both_celery_pools_answer_a_ping(stack_env, celery_workers):
    from celery import Celery

    client = Celery("smoke", broker=stack_env["REDIS_URL"])
    try:
        replies = client.control.ping(destination=list(celery_workers.values()), timeout=2)
    finally:
        client.close()
    answered = {name for reply in replies for name in reply}
    assert answered == set(celery_workers.values())


def test_beat_is_running(beat):
    pass


def test_register_user_and_db_see_the_same_database(register_user, db):
    user, token = register_user("smoke")
    assert token
    row = db.execute(text("SELECT username FROM users WHERE id = :id"), {"id": user["id"]}).one()
    assert row.username == user["username"]


def test_in_process_app_uses_the_test_services(client):
    assert client.get("/readyz").status_code == 200
