"""Accounts as others see and manage them: roles (routes.py), and the operators' CLI (cli.py)."""
from .routes import bp

__all__ = ["bp"]
