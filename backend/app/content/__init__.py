"""Posts and articles: the same routes and comments for both kinds of content."""
from .routes import make_blueprint

__all__ = ["make_blueprint"]
