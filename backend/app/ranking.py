"""Front-page "hot" scores (CPU-bound: recomputed periodically on the cpu queue)."""
from __future__ import annotations

import math
from datetime import datetime, timezone

from sqlalchemy import text

from .models import CONTENT_MODELS

WINDOW_DAYS = 30  # older items keep their last score
GRAVITY = 1.5  # how fast a score decays with age (as in Hacker News' ranking)


def hot_score(views: int, likes: int, collects: int, shares: int, comments: int,
              created_at: datetime, now: datetime) -> float:
    """Engagement, log-damped, divided by a power of the age in hours."""
    engagement = likes * 2 + collects * 3 + shares * 4 + comments * 3 + math.log1p(views)
    age_hours = max(0.0, (now - created_at).total_seconds() / 3600)
    return engagement / (age_hours + 2) ** GRAVITY


def recompute_hot_scores(session, kind: str, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    table = CONTENT_MODELS[kind].__tablename__
    rows = session.execute(
        text(
            f"""SELECT id, views_count, likes_count, collects_count, shares_count,
                       comments_count, created_at
                FROM {table} WHERE created_at > now() - make_interval(days => :days)
                  AND removed_at IS NULL"""
        ),
        {"days": WINDOW_DAYS},
    ).all()
    scores = [{"id": r[0], "s": hot_score(*r[1:], now=now)} for r in rows]
    if scores:
        session.execute(text(f"UPDATE {table} SET hot_score = :s WHERE id = :id"), scores)
    session.commit()
    return len(scores)
