"""The API's rate limits (Flask-Limiter), counted in Redis so that every web instance shares
them, answered 429 with Retry-After. Values: LOGIN_RATE_LIMIT, REGISTER_RATE_LIMIT and
WRITE_RATE_LIMIT (config.py, docs/contract.md).

Each budget is taken with one atomic INCR before the view runs, so concurrent requests cannot
all slip past a budget that only one of them had left."""
from __future__ import annotations

from flask import current_app, g, request
from flask_limiter.util import get_remote_address

from .extensions import limiter


def _setting(name: str):
    return lambda: current_app.config[name]


def _account_from_body() -> str:
    body = request.get_json(force=True, silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str):
        return "account:?"
    # A name Redis cannot take (a lone surrogate) is refused by validation right after this.
    return f"account:{name.lower().encode('utf-8', 'backslashreplace').decode()}"


def _signed_in_account() -> str:
    return f"account:{g.user.username.lower()}"


def _signed_in_user() -> str:
    return f"user:{g.user.id}"


# Password guesses, per client address and per account name. Each attempt is counted before
# the password is checked and given back when it succeeds (give_back_password_attempt), so
# only failures use the budget up: counted after the check (Flask-Limiter's deduct_when), 40
# concurrent wrong passwords all reached Argon2 and none got 429.
login_per_client = limiter.limit(_setting("LOGIN_RATE_LIMIT"), key_func=get_remote_address,
                                 scope="login-client")
# One budget per account, shared by a login and a password change (the same scope and key), so
# a stolen token cannot guess the password faster than a login could.
login_per_account = limiter.shared_limit(_setting("LOGIN_RATE_LIMIT"),
                                         key_func=_account_from_body, scope="login-account")
password_change_per_account = limiter.shared_limit(
    _setting("LOGIN_RATE_LIMIT"), key_func=_signed_in_account, scope="login-account")


def give_back_password_attempt() -> None:
    """The right password: return what this request took from its login budgets."""
    storage = limiter.limiter.storage
    for spent in limiter.current_limits:
        storage.incr(spent.key, spent.limit.get_expiry(), amount=-1)


# New accounts per client address (nginx also limits /api/auth/ per address, but it does not
# count across load balancers).
register_per_client = limiter.limit(_setting("REGISTER_RATE_LIMIT"),
                                    key_func=get_remote_address, scope="register")

# Every write of one user (posts, articles, comments, likes/collects/shares and their undoing)
# draws on one budget. Goes below login_required, which sets g.user: anonymous requests are
# refused (401) without being counted.
write_per_user = limiter.shared_limit(_setting("WRITE_RATE_LIMIT"), key_func=_signed_in_user,
                                      scope="write")
