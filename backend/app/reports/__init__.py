"""Reports: users flag posts, articles and comments; moderators remove them or dismiss."""
from .routes import bp

__all__ = ["bp"]
