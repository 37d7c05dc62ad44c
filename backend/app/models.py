"""The schema. Relations (likes, collects, shares, comments) are the source of truth;
the *_count columns are caches that the Celery count tasks recompute from them."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

ACTIONS = ("like", "collect", "share")
# Moderators act on reports, remove content and ban; admins also name moderators (app/roles.py).
ROLES = ("user", "moderator", "admin")
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
    # As stored; SYNSPIRIT_ADMINS makes admins whatever this holds (roles.role_of).
    role: Mapped[str] = mapped_column(Enum(*ROLES, name="user_role"), default="user",
                                      server_default="user")
    # A ban (POST /api/users/NAME/ban): in force from banned_at until banned_until (for good
    # when that is NULL); lifting it clears all three. Its history is the moderation log.
    banned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    banned_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ban_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def banned(self) -> bool:
        """A ban in force now (as auth/security.py's query computes it in SQL)."""
        return self.banned_at is not None and (
            self.banned_until is None or self.banned_until > datetime.now(timezone.utc))

    __table_args__ = (Index("uq_users_username_lower", func.lower(username), unique=True),)


def named(username: str):
    """The account of that name whatever its case, or None: PostgreSQL's lower() on both sides,
    as the unique index on lower(username) compares them."""
    return db.session.scalar(
        db.select(User).where(func.lower(User.username) == func.lower(username)))


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
    # Removed by a moderator (a report resolved with `remove`): 404 but for staff, in no list,
    # ranking, search or count, kept for the moderation log.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # as _Content's


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


# What a notification tells its recipient about: a like, collect or share (ACTIONS) of their
# post, article or comment, a comment on their post or article, a moderator's action.
NOTIFICATION_TYPES = (*ACTIONS, "comment", "moderation")


class Notification(db.Model):
    """One notification of one user, stored by the same statement as its cause (a reaction,
    with its reaction notice: at most one per actor, action and target; a comment) and pushed
    live with the same id (serializers.notification). Read ones older than
    NOTIFICATION_RETENTION_DAYS are pruned (tasks.prune_notifications)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))  # recipient
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    actor: Mapped[User] = relationship(foreign_keys=[actor_id], lazy="joined")
    type: Mapped[str] = mapped_column(Enum(*NOTIFICATION_TYPES, name="notification_type"))
    target_type: Mapped[str] = mapped_column(Enum(*TARGET_TYPES, name="notification_target"))
    target_id: Mapped[int] = mapped_column(Integer)
    # `comment`: the new comment (on the post or article that target_* names).
    comment_id: Mapped[int | None] = mapped_column(Integer)
    read: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_notifications_user_id_id", "user_id", "id"),
        Index("ix_notifications_unread", "user_id", "id", postgresql_where=text("NOT read")),
        Index("ix_notifications_read_created_at", "created_at", postgresql_where=text("read")),
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


MODERATION_ACTIONS = ("ban", "unban", "role", "remove", "dismiss")


class ModerationEntry(db.Model):
    """The moderation log (GET /api/moderation/log): who did what to which target, when, why.
    Rows are never changed; a moderator's account deleted leaves their entries (moderator_id
    NULL)."""

    __tablename__ = "moderation_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    moderator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(Enum(*MODERATION_ACTIONS, name="moderation_action"))
    # "user" or one of TARGET_TYPES; no foreign key: the entry outlives its target.
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    # What the action set: {"role": ...} or {"until": ...}.
    detail: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    moderator: Mapped[User | None] = relationship()

    __table_args__ = (Index("ix_moderation_log_target", "target_type", "target_id"),)


REPORT_STATUSES = ("open", "removed", "dismissed")


class Report(db.Model):
    """A user's report of a post, article or comment (POST /api/reports). One open report per
    reporter and target (the partial unique index); a moderator resolves it by removing the
    target (every open report of it then says `removed`) or dismissing it."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    target_type: Mapped[str] = mapped_column(String(20))  # one of TARGET_TYPES
    target_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Enum(*REPORT_STATUSES, name="report_status"),
                                        default="open", server_default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    reporter: Mapped[User] = relationship(foreign_keys=[reporter_id])
    resolved_by: Mapped[User | None] = relationship(foreign_keys=[resolved_by_id])

    __table_args__ = (
        Index("uq_reports_open_per_reporter_and_target", "reporter_id", "target_type",
              "target_id", unique=True, postgresql_where=text("status = 'open'")),
        Index("ix_reports_status_id", "status", "id"),
        Index("ix_reports_target", "target_type", "target_id"),
    )
