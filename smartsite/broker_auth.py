"""Broker authentication: device credentials and mosquitto's password and ACL files.

A device's broker username is its registry id, which is also the device segment of its
topics, so one ACL pattern per kind confines every device to its own topics. Passwords are
random and shown once; the registry keeps only the hash, in the form mosquitto 2.0 reads
(``mosquitto_passwd`` writes the same): ``$7$<iterations>$<base64 salt>$<base64 hash>``, the
hash being PBKDF2-HMAC-SHA512 over the password with the raw salt bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

import psycopg
from pydantic import BaseModel

from smartsite.protocol.topics import DEVICE_TO_HUB, HUB_TO_DEVICE, SEGMENT_RE, Kind
from smartsite.settings import Settings

PBKDF2_SHA512 = "7"
# mosquitto_passwd's default. Device passwords carry 256 random bits, so stretching adds
# nothing against guessing them, while the broker pays it on every (re)connect of every
# device: a site coming back after an outage reconnects all at once. The hub's password
# comes from the environment; make it long and random too.
ITERATIONS = 101
SALT_BYTES = 12  # what mosquitto_passwd uses
PASSWORD_BYTES = 32


class BrokerAuthError(ValueError):
    """The registry or settings cannot be turned into broker files as they are."""


class BrokerFiles(BaseModel):
    """What ``write_broker_files`` wrote."""

    password_file: Path
    acl_file: Path
    devices: list[str]
    hub_username: str


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The mosquitto 2.0 ``$7$`` hash of ``password`` (a fresh random salt unless given)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"${PBKDF2_SHA512}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as the broker would decide)."""
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
        if kind != PBKDF2_SHA512:
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except ValueError:  # malformed hash (binascii.Error is a ValueError)
        return False
    return hmac.compare_digest(got, expected)


def new_password() -> str:
    """A random device password; URL-safe, so it also fits in an ``mqtt://user:pass@`` URL."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def issue_credential(conn: psycopg.Connection, device_id: str, password: str | None = None) -> str:
    """Give ``device_id`` a new broker password (random unless given) and store its hash.

    The previous password stops working once the broker files are rewritten and the broker
    reloads them. Returns the password: the only time it exists outside the device.
    """
    password = password or new_password()
    row = conn.execute(
        "UPDATE devices SET credential_hash = %s WHERE id = %s RETURNING id",
        (hash_password(password), device_id),
    ).fetchone()
    if row is None:
        raise KeyError(f"no device {device_id!r} in the registry")
    return password


def acl_text(prefix: str, hub_username: str) -> str:
    """The ACL file: the hub reads all and writes configuration and face galleries; devices
    only their own."""
    device_writes = sorted(
        f"{prefix}/+/%u/{kind.value}" + ("/+" if kind is Kind.EVIDENCE else "")
        for kind in DEVICE_TO_HUB
    )
    lines = [
        "# Written by `smartsite broker files` from the device registry: edits are overwritten.",
        "",
        "# The hub services read every protocol topic and publish device configuration and",
        "# the enrolled-face gallery (biometric data: each gateway reads only its own).",
        f"user {hub_username}",
        f"topic read {prefix}/#",
        *(f"topic write {prefix}/+/+/{k.value}" for k in sorted(HUB_TO_DEVICE)),
        "",
        "# Devices: the username is the device id, which is the device segment of the topic,",
        "# so each device publishes only the device-to-hub kinds under its own id (not its",
        "# config or gallery, which are the hub's to write) and reads only its own.",
        "# mosquitto applies patterns to every user, which is why no device may be named",
        "# like the hub user.",
        *(f"pattern write {t}" for t in device_writes),
        *(f"pattern read {prefix}/+/%u/{k.value}" for k in sorted(HUB_TO_DEVICE)),
    ]
    return "\n".join(lines) + "\n"


def password_text(
    conn: psycopg.Connection | None, hub_username: str, hub_password: str
) -> tuple[str, list[str]]:
    """The password file (hub first, then each active device with a credential) and the
    device ids in it; no ``conn``: no registry yet, the hub alone."""
    rows = (
        conn.execute(
            "SELECT id, credential_hash FROM devices "
            "WHERE active AND credential_hash IS NOT NULL ORDER BY id"
        ).fetchall()
        if conn is not None
        else []
    )
    devices = [str(r[0]) for r in rows]
    if hub_username in devices:
        raise BrokerAuthError(
            f"device {hub_username!r} has the hub's broker username: it would get the hub's "
            "rights. Rename the device or set SMARTSITE_HUB_MQTT_USERNAME."
        )
    lines = [f"{hub_username}:{hash_password(hub_password)}"]
    lines += [f"{device}:{hashed}" for device, hashed in rows]
    return "\n".join(lines) + "\n", devices


def write_broker_files(
    conn: psycopg.Connection | None, settings: Settings, password_file: Path, acl_file: Path
) -> BrokerFiles:
    """Write mosquitto's ``password_file`` and ``acl_file`` from the registry (``None``:
    the hub user only, for a broker that starts before the schema exists).

    Each file is replaced atomically, so a broker reloading them (SIGHUP) never reads half
    a file. They are private to the writing user: the password file holds hashes of
    credentials, and mosquitto warns about (later versions refuse) files others can read.
    """
    hub_username = settings.hub_mqtt_username
    if not SEGMENT_RE.match(hub_username):
        raise BrokerAuthError(f"SMARTSITE_HUB_MQTT_USERNAME {hub_username!r} is not a plain name")
    if not settings.hub_mqtt_password:
        raise BrokerAuthError(
            "SMARTSITE_HUB_MQTT_PASSWORD is not set: the hub services need a broker password"
        )
    passwords, devices = password_text(conn, hub_username, settings.hub_mqtt_password)
    _write_private(password_file, passwords)
    _write_private(acl_file, acl_text(settings.topic_prefix, hub_username))
    return BrokerFiles(
        password_file=password_file, acl_file=acl_file, devices=devices, hub_username=hub_username
    )


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
