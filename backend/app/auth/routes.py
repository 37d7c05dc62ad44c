from flask import current_app, g, jsonify, request
from flask_limiter.util import get_remote_address
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import APIError
from ..extensions import db, limiter
from ..models import User
from ..serializers import user_full
from ..validation import Credentials, LoginBody, json_body
from . import bp
from .security import hash_password, issue_token, login_required, verify_password


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_key() -> str:
    body = request.get_json(force=True, silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return f"account:{name.lower()}" if isinstance(name, str) else "account:?"


def _failed(response) -> bool:
    return response.status_code == 401


@bp.post("/api/auth/register")
def register():
    body = json_body(Credentials)
    user = User(username=body.username, password_hash=hash_password(body.password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise APIError(409, "username_taken", "that username is taken",
                       {"username": "already taken"}) from None
    return jsonify({"user": user_full(user), "token": issue_token(user)}), 201


# Only failed attempts count (deduct_when), per client address and per account name,
# in Redis so that every web instance shares the same budget.
@bp.post("/api/auth/login")
@limiter.limit(_login_limit, key_func=get_remote_address, deduct_when=_failed,
               scope="login-client")
@limiter.limit(_login_limit, key_func=_account_key, deduct_when=_failed, scope="login-account")
def login():
    body = json_body(LoginBody)
    user = db.session.scalar(select(User).where(User.username == body.username))
    if not verify_password(user.password_hash if user else None, body.password) or user is None:
        raise APIError(401, "invalid_credentials", "wrong username or password")
    return jsonify({"user": user_full(user), "token": issue_token(user)})


@bp.get("/api/me")
@login_required
def me():
    return jsonify(user_full(g.user))
