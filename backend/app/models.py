"""The schema. Relations (likes, collects, shares, comments) are the source of truth;
the *_count columns are caches that the Celery count tasks recompute from them."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

ACTIONS = ("like", "collect", "share")
TARGET_TYPES = ("post", "article", "post_comment", "article_comment")


def new_token_key() -> str:
    return secrets.token_hex(16)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Unique whatever the case (the index below): "Alice" cannot impersonate "alice".
    username: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Random, written into every token of this user and compared on every request
    # (auth/security.py): a token names this row, not just an id that a restore can hand to the
    # next new account; a password change draws a new one, refusing every older token at once.
    token_key: Mapped[str] = mapped_column(
        String(32), default=new_token_key,
        server_default=text("replace(gen_random_uuid()::text, '-', '')"))

    __table_args__ = (Index("uq_users_username_lower", func.lower(username), unique=True),)


class RevokedToken(db.Model):
    """A token signed out (POST /api/auth/logout) before it expired. Rows older than
    TOKEN_MAX_AGE are useless (the token is refused as expired) and are deleted."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class _Content:
    """Columns shared by posts and articles."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    views_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    likes_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    collects_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    shares_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    comments_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Recomputed periodically on the cpu queue; orders `sort=hot`.
    hot_score: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


def _list_indexes(table: str) -> tuple[Index, Index]:
    """The orders of the lists, id last: a keyset page (`WHERE (hot_score, id) < (:s, :i)
    ORDER BY hot_score DESC, id DESC LIMIT n`) is one backward index scan that reads n rows,
    wherever the cursor is (content/pages.py). created_at alone also serves the ranking's
    30-day window."""
    return (Index(f"ix_{table}_hot_score_id", "hot_score", "id"),
            Index(f"ix_{table}_created_at_id", "created_at", "id"))


class Post(_Content, db.Model):
    __tablename__ = "posts"

    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    author: Mapped[User] = relationship(lazy="joined")

    __table_args__ = _list_indexes("posts")


class Article(_Content, db.Model):
    __tablename__ = "articles"

    __table_args__ = _list_indexes("articles")

    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    author: Mapped[User] = relationship(lazy="joined")
    # Rendered from `content` (Markdown) by the cpu queue; null until then.
    content_html: Mapped[str | None] = mapped_column(Text)
    excerpt: Mapped[str | None] = mapped_column(Text)
    reading_minutes: Mapped[int | None] = mapped_column(Integer)
    # Bumped on every content change, so that a late render of old content is discarded.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class _Comment:
    """Columns shared by comments on posts and on articles."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    likes_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PostComment(_Comment, db.Model):
    __tablename__ = "post_comments"

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    author: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (Index("ix_post_comments_post_id_id", "post_id", "id"),)


class ArticleComment(_Comment, db.Model):
    __tablename__ = "article_comments"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    author: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (Index("ix_article_comments_article_id_id", "article_id", "id"),)


class _Targeted:
    """A user's like, collect or share of exactly one target. Each target kind has its own
    nullable foreign key (so deleting a target cascades) and its own unique constraint (so
    "one per user, action and target" holds in the schema, not in a route)."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(Enum(*ACTIONS, name="reaction_action"))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    post_comment_id: Mapped[int | None] = mapped_column(
        ForeignKey("post_comments.id", ondelete="CASCADE")
    )
    article_comment_id: Mapped[int | None] = mapped_column(
        ForeignKey("article_comments.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def _one_per_user_action_and_target() -> tuple:
    return (
        CheckConstraint(
            "num_nonnulls(post_id, article_id, post_comment_id, article_comment_id) = 1",
            name="one_target",
        ),
        UniqueConstraint("user_id", "action", "post_id"),
        UniqueConstraint("user_id", "action", "article_id"),
        UniqueConstraint("user_id", "action", "post_comment_id"),
        UniqueConstraint("user_id", "action", "article_comment_id"),
    )


class Reaction(_Targeted, db.Model):
    """One like, collect or share by one user of exactly one target (the truth the counts are
    computed from)."""

    __tablename__ = "reactions"

    __table_args__ = (
        *_one_per_user_action_and_target(),
        CheckConstraint(
            "(post_comment_id IS NULL AND article_comment_id IS NULL) OR action = 'like'",
            name="comments_take_likes_only",
        ),
        Index("ix_reactions_post", "post_id", "action", postgresql_where="post_id IS NOT NULL"),
        Index(
            "ix_reactions_article", "article_id", "action",
            postgresql_where="article_id IS NOT NULL",
        ),
        Index(
            "ix_reactions_post_comment", "post_comment_id",
            postgresql_where="post_comment_id IS NOT NULL",
        ),
        Index(
            "ix_reactions_article_comment", "article_comment_id",
            postgresql_where="article_comment_id IS NOT NULL",
        ),
    )


class ReactionNotice(_Targeted, db.Model):
    """The target's author was notified of this user's like, collect or share. Kept when the
    reaction is undone, so that doing it again notifies nobody again: at most one notification
    per actor, action and target (like, unlike, like... notified once)."""

    __tablename__ = "reaction_notices"

    # The partial indexes let a deleted target's notices go without a scan (ON DELETE CASCADE).
    __table_args__ = (
        *_one_per_user_action_and_target(),
        *(Index(f"ix_reaction_notices_{column}", column,
                postgresql_where=f"{column} IS NOT NULL")
          for column in ("post_id", "article_id", "post_comment_id", "article_comment_id")),
    )


class ViewBatch(db.Model):
    """A flushed batch of buffered views, recorded in the same transaction that applies it,
    so that a flush retried after a crash never counts the same views twice."""

    __tablename__ = "view_batches"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


# What each target kind of the API maps to: its model, the reaction column, and what it counts.
CONTENT_MODELS = {"post": Post, "article": Article}
COMMENT_MODELS = {"post": PostComment, "article": ArticleComment}
TARGET_MODELS = {
    "post": Post,
    "article": Article,
    "post_comment": PostComment,
    "article_comment": ArticleComment,
}
REACTION_COLUMN = {
    "post": "post_id",
    "article": "article_id",
    "post_comment": "post_comment_id",
    "article_comment": "article_comment_id",
}
