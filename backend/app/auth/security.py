"""Passwords (Argon2id) and bearer tokens (signed, expiring)."""
from __future__ import annotations

from functools import wraps

import gevent
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..errors import APIError
from ..extensions import db
from ..models import User


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"],
        memory_cost=cfg["ARGON2_MEMORY_COST"],
        parallelism=cfg["ARGON2_PARALLELISM"],
    )


def _off_loop(fn, *args):
    # Argon2 releases the GIL: running it in gevent's thread pool keeps the event loop serving
    # other requests (and uses the second core) while a password is hashed.
    return gevent.get_hub().threadpool.apply(fn, args)


def hash_password(password: str) -> str:
    return _off_loop(_hasher().hash, password)


# A real hash to verify against when the account does not exist, so that an unknown name
# costs as much time as a wrong password (no user enumeration by timing).
_DUMMY_HASH: dict[tuple, str] = {}


def verify_password(password_hash: str | None, password: str) -> bool:
    hasher = _hasher()
    if password_hash is None:
        params = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
        if params not in _DUMMY_HASH:
            _DUMMY_HASH[params] = hasher.hash("not-a-real-password")
        password_hash = _DUMMY_HASH[params]
        _verify(hasher, password_hash, password)
        return False
    return _verify(hasher, password_hash, password)


def _check(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    # Runs in the thread pool: answer with a bool rather than raise (gevent would log the
    # exception of every wrong password as a traceback).
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    return bool(_off_loop(_check, hasher, password_hash, password))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="synspirit-auth")


def issue_token(user: User) -> str:
    return _serializer().dumps({"uid": user.id})


def user_from_token(token: str | None) -> User | None:
    if not token:
        return None
    try:
        data = _serializer().loads(token, max_age=current_app.config["TOKEN_MAX_AGE"])
    except (SignatureExpired, BadSignature):
        return None
    uid = data.get("uid") if isinstance(data, dict) else None
    if not isinstance(uid, int):
        return None
    return db.session.get(User, uid)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        user = user_from_token(bearer_token())
        if user is None:
            raise APIError(401, "unauthorized", "a valid bearer token is required")
        g.user = user
        return view(*args, **kwargs)

    return wrapper
