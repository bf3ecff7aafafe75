"""Notifications: the alert outbox fanned out to channels (signed webhooks, e-mail).

The engine and the lifecycle write what is to be announced into ``alert_outbox`` in the
same transaction as the alert itself. The notifier turns each outbox row into one delivery
per matching channel and sends them. Every delivery keeps its own attempts and next-attempt
time, and every channel is served by its own thread each round, so a channel that fails or
hangs (until its timeout) never holds up the others. Live WebSocket push belongs to the
server, which can LISTEN on the same ``alert_outbox`` channel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from smartsite.db import connect
from smartsite.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Smartsite-Signature"
TIMESTAMP_HEADER = "X-Smartsite-Timestamp"
LEVEL_NAMES = {"warning": "预警 warning", "alarm": "报警 alarm"}
MAX_BACKOFF = timedelta(hours=1)


class ChannelIn(BaseModel):
    """A place alerts are sent to."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook", "email"] = Field(description="Signed HTTP POST, or an e-mail.")
    target: str = Field(min_length=3, description="The URL, or the e-mail address.")
    secret: str | None = Field(
        None, min_length=16, description="Webhook HMAC key shared with the receiver."
    )
    audience: Literal["officer", "regulator"] = Field(description="Whose announcements.")
    project_id: str | None = Field(None, description="Only this project's; None: every project.")


class Notification(BaseModel):
    """What a webhook receives (the JSON body) and an e-mail describes."""

    outbox_id: int
    alert_id: str
    action: str
    audience: str
    project_id: str
    created_at: datetime
    payload: dict[str, Any]


def add_channel(conn: psycopg.Connection, c: ChannelIn) -> int:
    row = conn.execute(
        "INSERT INTO notification_channels (kind, target, secret, audience, project_id) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (c.kind, c.target, c.secret, c.audience, c.project_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``<timestamp>.<body>``: the receiver recomputes it with the shared
    secret and refuses stale timestamps, so a captured request cannot be replayed later."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300
) -> bool:
    """What a receiver does (also used by the tests)."""
    fresh = abs(time.time() - float(timestamp)) <= max_age_s
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def fan_out(conn: psycopg.Connection) -> int:
    """Turn outbox rows past the cursor into one pending delivery per matching channel."""
    with conn.transaction():
        row = conn.execute(
            "SELECT last_outbox_id FROM notifier_cursor WHERE id = 1 FOR UPDATE"
        ).fetchone()
        assert row is not None, "migration 0007 not applied"
        cur = conn.execute(
            "INSERT INTO notification_deliveries (outbox_id, channel_id) "
            "SELECT o.id, c.id FROM alert_outbox o JOIN notification_channels c "
            "ON c.active AND c.audience = o.audience "
            "AND (c.project_id IS NULL OR c.project_id = o.project_id) "
            "WHERE o.id > %s ON CONFLICT DO NOTHING",
            (row[0],),
        )
        conn.execute(
            "UPDATE notifier_cursor SET last_outbox_id = "
            "(SELECT coalesce(max(id), %s) FROM alert_outbox) WHERE id = 1",
            (row[0],),
        )
    return cur.rowcount


class Notifier:
    """Sends due deliveries, one thread per channel per round."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.database_url = database_url
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._http = httpx.Client(timeout=settings.notify_timeout_seconds)

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._http.close()

    def _run(self) -> None:
        listener: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = connect(self.database_url, autocommit=True)
                    listener.execute("LISTEN alert_outbox")
                self.round(listener)
                self._wait(listener)
            except psycopg.OperationalError as exc:
                log.warning("notifier: database unavailable (%s); retrying", exc)
                if listener is not None:
                    listener.close()
                listener = None
                self._stop.wait(2.0)
            except Exception:
                log.exception("notifier: round failed; next round")
                self._stop.wait(self.settings.notify_poll_seconds)
        if listener is not None:
            listener.close()

    def _wait(self, listener: psycopg.Connection) -> None:
        """Until a new outbox row is announced (NOTIFY) or the poll interval ends (retries
        falling due), in slices of a second so that stop() is heard promptly."""
        deadline = time.monotonic() + self.settings.notify_poll_seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if any(True for _ in listener.notifies(timeout=min(left, 1.0), stop_after=1)):
                return

    def round(self, conn: psycopg.Connection | None = None) -> dict[str, int]:
        """Fan out new outbox rows, then send what is due on every channel in parallel.

        ``conn``: an autocommit connection to use (the running notifier passes its listening
        one, rather than opening a connection every poll); None: a connection for this round.
        """
        if conn is None:
            with connect(self.database_url, autocommit=True) as own:
                return self.round(own)
        fan_out(conn)
        channels = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT channel_id FROM notification_deliveries "
                "WHERE status = 'pending' AND next_attempt_at <= now()"
            )
        ]
        if not channels:
            return {}
        with ThreadPoolExecutor(max_workers=min(len(channels), 8)) as pool:
            sent = list(pool.map(self._serve_channel, channels))
        return dict(zip((str(c) for c in channels), sent, strict=True))

    def _serve_channel(self, channel_id: int) -> int:
        """Send this channel's due deliveries in order; stop at its first failure, so one
        that is down is retried later instead of tried for every pending row now."""
        sent = 0
        with connect(self.database_url) as conn:
            while True:
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    # SKIP LOCKED: several notifiers (hub replicas) never send one twice.
                    cur.execute(
                        "SELECT d.outbox_id, d.attempts, c.kind, c.target, c.secret, "
                        "o.alert_id, o.action, o.audience, o.project_id, o.created_at, o.payload "
                        "FROM notification_deliveries d "
                        "JOIN notification_channels c ON c.id = d.channel_id "
                        "JOIN alert_outbox o ON o.id = d.outbox_id "
                        "WHERE d.channel_id = %s AND d.status = 'pending' "
                        "AND d.next_attempt_at <= now() ORDER BY d.outbox_id "
                        "LIMIT 1 FOR UPDATE OF d SKIP LOCKED",
                        (channel_id,),
                    )
                    row = cur.fetchone()
                    if row is None:
                        return sent
                    note = Notification(
                        outbox_id=row["outbox_id"],
                        alert_id=str(row["alert_id"]),
                        action=row["action"],
                        audience=row["audience"],
                        project_id=row["project_id"],
                        created_at=row["created_at"],
                        payload=row["payload"],
                    )
                    try:
                        self._send(row["kind"], row["target"], row["secret"], channel_id, note)
                    except Exception as exc:
                        self._failed(cur, channel_id, note.outbox_id, row["attempts"] + 1, exc)
                        return sent
                    cur.execute(
                        "UPDATE notification_deliveries SET status = 'delivered', "
                        "attempts = attempts + 1, delivered_at = now(), last_error = NULL "
                        "WHERE outbox_id = %s AND channel_id = %s",
                        (note.outbox_id, channel_id),
                    )
                    sent += 1

    def _failed(
        self,
        cur: psycopg.Cursor[Any],
        channel_id: int,
        outbox_id: int,
        attempts: int,
        exc: Exception,
    ) -> None:
        s = self.settings
        gave_up = attempts >= s.notify_max_attempts
        delay = min(timedelta(seconds=s.notify_retry_seconds * 2 ** (attempts - 1)), MAX_BACKOFF)
        log.warning(
            "notifier: channel %s, outbox %s, attempt %d failed: %s%s",
            channel_id,
            outbox_id,
            attempts,
            exc,
            " (giving up)" if gave_up else "",
        )
        cur.execute(
            "UPDATE notification_deliveries SET attempts = %s, last_error = %s, "
            "status = %s, next_attempt_at = now() + %s "
            "WHERE outbox_id = %s AND channel_id = %s",
            (
                attempts,
                str(exc)[:500],
                "failed" if gave_up else "pending",
                delay,
                outbox_id,
                channel_id,
            ),
        )

    def _send(
        self, kind: str, target: str, secret: str | None, channel_id: int, n: Notification
    ) -> None:
        if kind == "webhook":
            assert secret is not None  # the table's CHECK
            body = n.model_dump_json().encode()
            ts = str(int(time.time()))
            r = self._http.post(
                target,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Smartsite-Event": f"alert.{n.action}",
                    # the receiver's idempotency key: a retry after a lost response repeats it
                    "X-Smartsite-Delivery": f"{n.outbox_id}-{channel_id}",
                    TIMESTAMP_HEADER: ts,
                    SIGNATURE_HEADER: sign(secret, ts, body),
                },
            )
            r.raise_for_status()
        else:
            self._mail(target, n)

    def _mail(self, to: str, n: Notification) -> None:
        url = self.settings.smtp_url
        if not url:
            raise RuntimeError("no mail server configured (SMARTSITE_SMTP_URL)")
        parts = urlsplit(url)
        p = n.payload
        level = LEVEL_NAMES.get(str(p.get("level")), str(p.get("level", "")))
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Subject"] = f"[{level}] {p.get('title') or p.get('rule', 'alert')} — {n.project_id}"
        msg["Message-ID"] = f"<alert-{n.outbox_id}@smartsite>"  # the same on every retry
        lines = [
            f"Project: {n.project_id}",
            f"Device: {p.get('device_id', '')}",
            f"What: {n.action} ({p.get('reason', '')})",
            f"Value: {p.get('value')} (level {p.get('threshold')})",
            f"Priority: {p.get('priority')}",
            f"At: {p.get('at', n.created_at.astimezone(UTC).isoformat())}",
            f"Alert id: {n.alert_id}",
            "",
            json.dumps(p, ensure_ascii=False, indent=1),
        ]
        msg.set_content("\n".join(lines))
        smtp_cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        timeout = self.settings.notify_timeout_seconds
        with smtp_cls(parts.hostname or "localhost", parts.port or 0, timeout=timeout) as smtp:
            smtp.ehlo()
            if parts.scheme == "smtp" and smtp.has_extn("starttls"):
                smtp.starttls()
            if parts.username:
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(msg)
