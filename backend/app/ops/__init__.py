"""Liveness and readiness."""
from .routes import bp

__all__ = ["bp"]
