"""Likes, collects and shares of posts, articles and comments."""
from .routes import bp

__all__ = ["bp"]
