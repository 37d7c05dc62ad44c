"""How models look in the API."""
from __future__ import annotations

from datetime import datetime

from .roles import role_of


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def user_public(user) -> dict:
    return {"id": user.id, "username": user.username}


def user_full(user) -> dict:
    """The account as its owner sees it (a User row or the signed-in record)."""
    return {"id": user.id, "username": user.username, "created_at": iso(user.created_at),
            "role": role_of(user)}


def content_counts(item) -> dict:
    return {
        "views": item.views_count,
        "likes": item.likes_count,
        "collects": item.collects_count,
        "shares": item.shares_count,
        "comments": item.comments_count,
    }


def content(item, kind: str, author=None) -> dict:
    """author: the item's author when the caller has it (no query for item.author)."""
    out = {
        "id": item.id,
        "title": item.title,
        "content": item.content,
        "author": user_public(author or item.author),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "counts": content_counts(item),
    }
    if kind == "article":
        out["content_html"] = item.content_html
        out["excerpt"] = item.excerpt
        out["reading_minutes"] = item.reading_minutes
    return out


def comment(item, author=None) -> dict:
    return {
        "id": item.id,
        "content": item.content,
        "author": user_public(author or item.author),
        "created_at": iso(item.created_at),
        "counts": {"likes": item.likes_count},
    }


def notification(item, actor=None) -> dict:
    """A stored notification (a Notification row, or what the statement that stored it
    returned), as GET /api/notifications lists it and the live `notification` event carries it.
    actor: the actor as user_public gives it, when the caller has it (no query for item.actor)."""
    return {
        "id": item.id,
        "type": item.type,
        # A moderator's action names no moderator to the author (the staff's log does).
        "actor": (None if item.type == "moderation"
                  else actor if actor is not None else user_public(item.actor)),
        "target_type": item.target_type,
        "target_id": item.target_id,
        "comment_id": item.comment_id,
        "read": item.read,
        "created_at": iso(item.created_at),
    }


def moderation_entry(entry) -> dict:
    return {
        "id": entry.id,
        "moderator": user_public(entry.moderator) if entry.moderator else None,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "reason": entry.reason,
        "detail": entry.detail or {},
        "created_at": iso(entry.created_at),
    }


def ban(user) -> dict:
    """An account's ban state (POST /api/users/NAME/ban)."""
    return {"id": user.id, "username": user.username, "banned": user.banned,
            "until": iso(user.banned_until), "reason": user.ban_reason if user.banned else None}


def report_target(item) -> dict:
    """What a report is about, for the staff: its author, title (posts, articles), the start of
    its text, whether it was removed."""
    out = {"author": user_public(item.author), "content": item.content[:280],
           "removed": item.removed_at is not None}
    if hasattr(item, "title"):
        out["title"] = item.title
    return out


def report(item, target: dict | None = None) -> dict:
    """target: report_target of the reported item (the staff's list), None otherwise or when
    its author deleted it."""
    return {
        "id": item.id,
        "target_type": item.target_type,
        "target_id": item.target_id,
        "reason": item.reason,
        "reporter": user_public(item.reporter),
        "status": item.status,
        "created_at": iso(item.created_at),
        "resolved_by": user_public(item.resolved_by) if item.resolved_by else None,
        "resolved_at": iso(item.resolved_at),
        "target": target,
    }
