"""The hub's secret key: from the environment, or generated once for the embedded default."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet

from smartsite.settings import Settings


def secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.home / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _derive(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def keyed_hash(key: bytes, purpose: str, value: str) -> bytes:
    """Deterministic lookup key for a sensitive value (no rainbow tables without the key)."""
    return hmac.new(_derive(key, "hash:" + purpose), value.encode(), hashlib.sha256).digest()


def fernet(key: bytes, purpose: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(key, "encrypt:" + purpose)))
