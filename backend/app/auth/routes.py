"""Accounts: /api/auth/register, /api/auth/login, /api/auth/logout, /api/auth/password
(password guesses rate-limited) and /api/me."""
from flask import Blueprint, g, jsonify
from sqlalchemy.exc import IntegrityError

from ..errors import APIError
from ..extensions import db
from ..models import User, named, new_token_key
from ..rate_limits import (
    give_back_password_attempt,
    login_per_account,
    login_per_client,
    password_change_per_account,
    register_per_client,
)
from ..serializers import user_full
from ..validation import Credentials, LoginBody, PasswordChange, json_body
from .security import (
    hash_password,
    issue_token,
    login_required,
    refuse_if_banned,
    revoke,
    verify_password,
)

bp = Blueprint("auth", __name__)


def _signed_in(user: User, status: int = 200):
    return jsonify({"user": user_full(user), "token": issue_token(user)}), status


@bp.post("/api/auth/register")
@register_per_client
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
    return _signed_in(user, 201)


@bp.post("/api/auth/login")
@login_per_client
@login_per_account
def login():
    body = json_body(LoginBody)
    user = named(body.username)  # any case of the name: one account
    if not verify_password(user.password_hash if user else None, body.password) or user is None:
        raise APIError(401, "invalid_credentials", "wrong username or password")
    give_back_password_attempt()
    refuse_if_banned(user)  # told only to whoever knows the password
    return _signed_in(user)


@bp.post("/api/auth/logout")
@login_required
def logout():
    revoke(g.token)
    return "", 204


@bp.post("/api/auth/password")
@login_required
@password_change_per_account
def change_password():
    body = json_body(PasswordChange)
    user = db.session.get(User, g.user.id)  # g.user is what was read of it (security.py)
    if not verify_password(user.password_hash, body.current_password):
        raise APIError(403, "wrong_password", "the current password is wrong",
                       {"current_password": "wrong password"})
    give_back_password_attempt()
    user.password_hash = hash_password(body.new_password)
    user.token_key = new_token_key()  # every token issued before this one is refused
    db.session.commit()
    return _signed_in(user)


@bp.get("/api/me")
@login_required
def me():
    return jsonify(user_full(g.user))
