"""Events pushed to clients. Called from Celery workers and web instances alike: the emits go
through the Redis message queue, so they reach clients on every web instance."""
from __future__ import annotations

from ..extensions import socketio


def room(kind: str, content_id: int) -> str:
    return f"{kind}:{content_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


# Every connection of a moderator or admin: new reports (reports/routes.py).
MODERATORS_ROOM = "moderators"


def counts(kind: str, content_id: int, values: dict) -> None:
    socketio.emit("counts", {"target_type": kind, "target_id": content_id, "counts": values},
                  to=room(kind, content_id))


def comment_counts(kind: str, content_id: int, comment_id: int, likes: int) -> None:
    socketio.emit(
        "counts",
        {"target_type": f"{kind}_comment", "target_id": comment_id, "counts": {"likes": likes},
         "parent": {"target_type": kind, "target_id": content_id}},
        to=room(kind, content_id),
    )


def comment(kind: str, content_id: int, payload: dict) -> None:
    socketio.emit("comment", {"target_type": kind, "target_id": content_id, "comment": payload},
                  to=room(kind, content_id))


def rendered(article_id: int) -> None:
    socketio.emit("rendered", {"target_type": "article", "target_id": article_id},
                  to=room("article", article_id))


def notification(user_id: int, payload: dict) -> None:
    socketio.emit("notification", payload, to=user_room(user_id))
