"""Passwords (Argon2id) and bearer tokens (signed, expiring, bound to their user's row,
revocable one by one)."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import wraps

import gevent
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from .. import rawdb
from ..errors import APIError
from ..extensions import db
from ..models import RevokedToken, User


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


@dataclass(frozen=True)
class TokenClaims:
    """What a valid signature vouches for: the user's id and token_key at issue time, this
    token's own id (what logout revokes) and when it was issued."""

    uid: int
    key: str
    jti: str
    issued_at: datetime


def issue_token(user: User) -> str:
    return _serializer().dumps({"uid": user.id, "key": user.token_key,
                                "jti": secrets.token_hex(16)})


def read_token(token: str | None) -> TokenClaims | None:
    """The claims of a token signed with SECRET_KEY and younger than TOKEN_MAX_AGE (no database:
    whether its user still accepts it is user_from_token's question)."""
    if not token:
        return None
    try:
        data, issued_at = _serializer().loads(
            token, max_age=current_app.config["TOKEN_MAX_AGE"], return_timestamp=True)
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict):
        return None
    uid, key, jti = data.get("uid"), data.get("key"), data.get("jti")
    if not (isinstance(uid, int) and isinstance(key, str) and isinstance(jti, str)):
        return None  # also every token issued before tokens carried a key
    return TokenClaims(uid, key, jti, issued_at)


@dataclass(frozen=True)
class SignedIn:
    """The signed-in user as a request sees it (g.user): what routes read of the row. A route
    that changes the row loads it (db.session.get(User, g.user.id))."""

    id: int
    username: str
    created_at: datetime
    role: str  # as stored (roles.role_of gives the effective one)
    banned: bool  # a ban in force now
    banned_until: datetime | None
    ban_reason: str | None


# The row the token was issued for, if it still holds the token's key (no password change, no
# other account under a reused id) and the token was not signed out: one query on every
# authenticated request, so through rawdb (a third of the ORM's CPU).
_SIGNED_IN_SQL = """
SELECT id, username, created_at, role,
       banned_at IS NOT NULL AND (banned_until IS NULL OR banned_until > now()), banned_until,
       ban_reason
FROM users
WHERE id = %(uid)s AND token_key = %(key)s
  AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = %(jti)s)
"""


def user_from_claims(claims: TokenClaims) -> SignedIn | None:
    rows = rawdb.fetch(_SIGNED_IN_SQL, {"uid": claims.uid, "key": claims.key,
                                        "jti": claims.jti})
    return SignedIn(*rows[0]) if rows else None


def user_from_token(token: str | None) -> SignedIn | None:
    claims = read_token(token)
    return None if claims is None else user_from_claims(claims)


def revoke(claims: TokenClaims) -> None:
    """Refuse this token from now on. Its row is kept while the token could still be valid."""
    db.session.execute(insert(RevokedToken).values(jti=claims.jti, issued_at=claims.issued_at)
                       .on_conflict_do_nothing())
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=current_app.config["TOKEN_MAX_AGE"])
    db.session.execute(delete(RevokedToken).where(RevokedToken.issued_at < cutoff))
    db.session.commit()


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def refuse_if_banned(user) -> None:
    """403 `banned` (with the ban's `until` and `reason`) for an account under a ban in force
    (a SignedIn record or a User row)."""
    if user.banned:
        until = user.banned_until.isoformat() if user.banned_until else None
        raise APIError(403, "banned", f"this account is banned until {until}" if until
                       else "this account is banned", details={"until": until,
                                                               "reason": user.ban_reason})


def login_required(view):
    """The signed-in user in g.user and the claims of their token in g.token; 401 without a
    valid token, 403 `banned` while the account is banned."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        claims = read_token(bearer_token())
        user = None if claims is None else user_from_claims(claims)
        if user is None:
            raise APIError(401, "unauthorized", "a valid bearer token is required")
        refuse_if_banned(user)
        g.user, g.token = user, claims
        return view(*args, **kwargs)

    return wrapper
