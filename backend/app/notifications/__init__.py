"""A user's stored notifications: the list, read state (routes.py)."""
from .routes import bp

__all__ = ["bp"]
