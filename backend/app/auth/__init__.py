"""Accounts: register, log in, who am I; tokens and password hashing (security.py)."""
from .routes import bp

__all__ = ["bp"]
