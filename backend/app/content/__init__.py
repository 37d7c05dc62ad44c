"""Posts and articles: the same routes and comments for both kinds of content."""
from .routes import articles, posts

__all__ = ["articles", "posts"]
