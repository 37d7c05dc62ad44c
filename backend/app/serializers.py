"""How models look in the API."""
from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def user_public(user) -> dict:
    return {"id": user.id, "username": user.username}


def user_full(user) -> dict:
    return {"id": user.id, "username": user.username, "created_at": iso(user.created_at)}


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
