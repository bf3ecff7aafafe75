"""Passwords (argon2 via pwdlib), login tokens (JWT via pyjwt) and API keys.

Keys are ``sk_<id>_<secret>``: the id finds the row, and only a keyed hash of the secret is
stored, so a database dump does not hand out working keys.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta

import jwt
from pwdlib import PasswordHash

from smartsite.secrets import keyed_hash

_hasher = PasswordHash.recommended()
_ALGORITHM = "HS256"
_ISSUER = "smartsite"
# Verified against when the user does not exist, so a missing user costs the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    return _hasher.verify(password, password_hash)


def create_token(key: bytes, user_id: int, role: str, minutes: int) -> tuple[str, datetime]:
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    claims = {"sub": str(user_id), "role": role, "exp": expires, "iss": _ISSUER}
    return jwt.encode(claims, key, algorithm=_ALGORITHM), expires


def decode_token(key: bytes, token: str) -> int | None:
    """The user id in a valid, unexpired token of ours; None otherwise."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[_ALGORITHM], issuer=_ISSUER, options={"require": ["exp"]}
        )
        return int(claims["sub"])
    except (jwt.PyJWTError, KeyError, ValueError):
        return None


def new_api_key(key: bytes) -> tuple[str, str, bytes]:
    """(id, the full key to show once, the hash to store)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return key_id, f"sk_{key_id}_{secret}", keyed_hash(key, "api-key", secret)


def parse_api_key(full: str) -> tuple[str, str] | None:
    parts = full.split("_", 2)
    if len(parts) != 3 or parts[0] != "sk" or not parts[1].isalnum():
        return None
    return parts[1], parts[2]


def api_key_matches(key: bytes, secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(keyed_hash(key, "api-key", secret), bytes(stored))
