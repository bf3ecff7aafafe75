"""The hub's secrets (its key, its broker password): from the environment, or generated
once into the home directory for the embedded default."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

from smartsite.settings import Settings


def _generated_once(path: Path, nbytes: int) -> str:
    """The random secret kept in ``path`` (mode 0600), created on first use.

    Written in full to a private temporary file, then hard-linked into place: two smartsite
    processes starting together (hub and simulate) never read a half-written file, and the
    one that comes second keeps the first one's secret instead of replacing it.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(nbytes))
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(tmp, path)
        finally:
            Path(tmp).unlink()
    return path.read_text().strip()


def secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    return _generated_once(settings.home / "secret.key", 48).encode()


def hub_mqtt_password(settings: Settings) -> str:
    """The hub's password on the embedded broker: SMARTSITE_HUB_MQTT_PASSWORD, else one
    generated into ``<home>/hub-mqtt.password`` (a second process of this home reads it)."""
    if settings.hub_mqtt_password:
        return settings.hub_mqtt_password
    return _generated_once(settings.home / "hub-mqtt.password", 32)


def _derive(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def keyed_hash(key: bytes, purpose: str, value: str) -> bytes:
    """Deterministic lookup key for a sensitive value (no rainbow tables without the key)."""
    return hmac.new(_derive(key, "hash:" + purpose), value.encode(), hashlib.sha256).digest()


def fernet(key: bytes, purpose: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(key, "encrypt:" + purpose)))
