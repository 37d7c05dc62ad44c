"""Moderation: the log of what moderators and admins did (GET /api/moderation/log)."""
from .routes import bp, record

__all__ = ["bp", "record"]
