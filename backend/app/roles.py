"""Roles: user, moderator, admin. Moderators act on reports, remove content and ban accounts;
admins do that and name moderators. An account is an admin when users.role says so or when
SYNSPIRIT_ADMINS names it (config ADMINS): the operator's way to the first admin, and a way no
token can undo."""
from __future__ import annotations

from functools import wraps

from flask import current_app, g

from .auth.security import bearer_token, login_required, user_from_token
from .errors import APIError

STAFF = ("moderator", "admin")


def role_of(user) -> str:
    """The effective role of a User row or the signed-in record (both have username, role)."""
    if user.username.lower() in current_app.config["ADMINS"]:
        return "admin"
    return user.role


def staff_request() -> bool:
    """Whether this request carries the valid token of a moderator or admin not banned (for
    public routes that show staff more: a removed item). One query; call it only then."""
    user = getattr(g, "user", None) or user_from_token(bearer_token())
    return user is not None and not user.banned and role_of(user) in STAFF


def role_required(*roles: str):
    """The view needs a signed-in user (401) whose role is one of these (403 otherwise)."""
    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(*args, **kwargs):
            if role_of(g.user) not in roles:
                raise APIError(403, "forbidden", f"this needs the role {' or '.join(roles)}")
            return view(*args, **kwargs)

        return wrapper

    return decorate
