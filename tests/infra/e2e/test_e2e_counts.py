"""End to end through nginx: users, a post, likes counted by a Celery worker on a web host."""
import time

from conftest import Api

COUNTED_WITHIN = 2.0  # seconds after the last like


def test_two_likes_are_counted_by_a_worker(alice, bob):
    """Two users like a post; GET shows likes == 2 within 2 s."""
    post_id = alice.create_post()
    alice.like(post_id)
    bob.like(post_id)
    deadline = time.monotonic() + COUNTED_WITHIN
    while (likes := Api().post(post_id)["counts"]["likes"]) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert likes == 2


def test_liking_twice_counts_once(alice, bob):
    """A second like by the same user does not count twice."""
    post_id = alice.create_post()
    bob.like(post_id)
    bob.like(post_id)
    time.sleep(COUNTED_WITHIN)
    assert Api().post(post_id)["counts"]["likes"] == 1

