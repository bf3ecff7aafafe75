"""Alert notifications: signed webhooks to a real HTTP server, e-mail to a real SMTP server,
retries, and a failing channel that does not hold up the others."""

from __future__ import annotations

import email.policy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from conftest import count, wait_until
from psycopg.types.json import Jsonb

from alerts.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, ChannelIn, Notifier, add_channel
from alerts.notify import verify as verify_signature
from smartsite.db.registry import DeviceIn, ProjectIn, upsert_device, upsert_project
from smartsite.embedded import free_port
from smartsite.settings import Settings

SECRET = "s3cret-shared-with-the-receiver"


class Receiver:
    """A real HTTP server that records webhook requests and answers with ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, _server: object, _session: object, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def site(db: psycopg.Connection) -> psycopg.Connection:
    for p in ("P-A", "P-B"):
        upsert_project(db, ProjectIn(id=p, name=p))
        upsert_device(db, DeviceIn(id=f"{p}-crane", project_id=p, kind="tower_crane"))
    return db


def announce(db: psycopg.Connection, project: str = "P-A", audience: str = "officer") -> int:
    """What the engine writes when it opens an alert: the alert and its outbox row."""
    alert_id = uuid.uuid4()
    db.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity, "
        "title, target) VALUES (%s, now(), %s, %s, 'hub', 'crane_wind', 'alarm', %s, %s)",
        (
            alert_id,
            project,
            f"{project}-crane",
            "塔吊风速 wind speed at the crane",
            alert_id.hex,
        ),  # one active alert per target: each call its own
    )
    payload = {
        "alert_id": str(alert_id),
        "action": "open",
        "level": "alarm",
        "value": 14.2,
        "threshold": 10.8,
        "title": "塔吊风速 wind speed at the crane",
        "device_id": f"{project}-crane",
        "rule": "crane_wind",
        "priority": 72,
    }
    row = db.execute(
        "INSERT INTO alert_outbox (alert_id, action, audience, project_id, payload) "
        "VALUES (%s, 'open', %s, %s, %s) RETURNING id",
        (alert_id, audience, project, Jsonb(payload)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def notifier(pg_url: str, smtp_port: int | None = None, **kw: Any) -> Notifier:
    s = Settings(
        smtp_url=f"smtp://127.0.0.1:{smtp_port}" if smtp_port else None,
        notify_retry_seconds=0.2,
        notify_timeout_seconds=2.0,
        **kw,
    )
    return Notifier(pg_url, s)


def delivery(db: psycopg.Connection, outbox_id: int, channel_id: int) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT status, attempts, last_error FROM notification_deliveries "
        "WHERE outbox_id = %s AND channel_id = %s",
        (outbox_id, channel_id),
    ).fetchone()
    assert row is not None, "no delivery row"
    return tuple(row)


def test_a_webhook_gets_a_signed_json_post(site, pg_url, receiver) -> None:
    ch = add_channel(
        site, ChannelIn(kind="webhook", target=receiver.url, secret=SECRET, audience="officer")
    )
    outbox = announce(site)
    notifier(pg_url).round()
    (req,) = receiver.requests
    h = req["headers"]
    assert verify_signature(SECRET, h[TIMESTAMP_HEADER], req["body"], h[SIGNATURE_HEADER])
    assert not verify_signature(
        "another-secret-entirely", h[TIMESTAMP_HEADER], req["body"], h[SIGNATURE_HEADER]
    )
    body = json.loads(req["body"])
    assert (body["action"], body["project_id"], body["payload"]["level"]) == (
        "open",
        "P-A",
        "alarm",
    )
    assert h["X-Smartsite-Event"] == "alert.open" and h["X-Smartsite-Delivery"] == f"{outbox}-{ch}"
    assert delivery(site, outbox, ch)[:2] == ("delivered", 1)


def test_a_failing_webhook_does_not_hold_up_email_and_is_retried(
    site, pg_url, receiver, mailbox
) -> None:
    box, smtp_port = mailbox
    hook = add_channel(
        site, ChannelIn(kind="webhook", target=receiver.url, secret=SECRET, audience="officer")
    )
    mail = add_channel(
        site, ChannelIn(kind="email", target="officer@site.example", audience="officer")
    )
    receiver.status = 503
    outbox = announce(site)
    n = notifier(pg_url, smtp_port)
    n.round()
    assert delivery(site, outbox, mail)[0] == "delivered"
    (msg,) = [message_from_bytes(m, policy=email.policy.default) for m in box.messages]
    assert msg["To"] == "officer@site.example"
    assert "报警 alarm" in str(msg["Subject"]) and "P-A" in str(msg["Subject"])
    status, attempts, error = delivery(site, outbox, hook)
    assert (status, attempts) == ("pending", 1) and "503" in error
    receiver.status = 200
    time.sleep(0.3)  # past the first retry delay
    n.round()
    assert delivery(site, outbox, hook)[:2] == ("delivered", 2)
    # the receiver saw the same delivery id twice: it can drop the repeat
    assert [r["headers"]["X-Smartsite-Delivery"] for r in receiver.requests] == [
        f"{outbox}-{hook}"
    ] * 2
    assert len(box.messages) == 1  # the e-mail was not sent again


def test_a_hanging_webhook_times_out_while_the_email_goes(site, pg_url, receiver, mailbox) -> None:
    box, smtp_port = mailbox
    hook = add_channel(
        site, ChannelIn(kind="webhook", target=receiver.url, secret=SECRET, audience="officer")
    )
    add_channel(site, ChannelIn(kind="email", target="officer@site.example", audience="officer"))
    receiver.delay = 3.0  # longer than the 2 s timeout
    outbox = announce(site)
    notifier(pg_url, smtp_port).round()
    assert len(box.messages) == 1
    status, attempts, error = delivery(site, outbox, hook)
    assert (status, attempts) == ("pending", 1) and "timed out" in error.lower()


def test_after_the_last_attempt_a_delivery_is_failed(site, pg_url) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    ch = add_channel(
        site, ChannelIn(kind="webhook", target=dead, secret=SECRET, audience="officer")
    )
    outbox = announce(site)
    n = notifier(pg_url, notify_max_attempts=2)
    n.round()
    assert delivery(site, outbox, ch)[:2] == ("pending", 1)
    time.sleep(0.3)
    n.round()
    assert delivery(site, outbox, ch)[:2] == ("failed", 2)


def test_channels_get_only_their_project_and_audience(site, pg_url, receiver) -> None:
    only_b = add_channel(
        site,
        ChannelIn(
            kind="webhook", target=receiver.url, secret=SECRET, audience="officer", project_id="P-B"
        ),
    )
    regulator = add_channel(
        site, ChannelIn(kind="webhook", target=receiver.url, secret=SECRET, audience="regulator")
    )
    announce(site, "P-A", "officer")
    b = announce(site, "P-B", "officer")
    r = announce(site, "P-A", "regulator")
    notifier(pg_url).round()
    got = sorted(
        (row[0], row[1])
        for row in site.execute("SELECT outbox_id, channel_id FROM notification_deliveries")
    )
    assert got == sorted([(b, only_b), (r, regulator)])


def test_the_running_notifier_wakes_on_a_new_alert(site, pg_url, receiver) -> None:
    ch = add_channel(
        site, ChannelIn(kind="webhook", target=receiver.url, secret=SECRET, audience="officer")
    )
    n = notifier(pg_url, notify_poll_seconds=30.0).start()  # only LISTEN/NOTIFY wakes it soon
    try:
        time.sleep(0.5)
        outbox = announce(site)
        wait_until(
            lambda: (
                count(
                    site, "SELECT count(*) FROM notification_deliveries WHERE status = 'delivered'"
                )
                == 1
            ),
            timeout=10,
            what="delivery",
        )
        assert delivery(site, outbox, ch)[0] == "delivered"
    finally:
        n.stop()


def test_bad_channels_are_refused(site) -> None:
    with pytest.raises(ValueError, match="secret"):
        ChannelIn(kind="webhook", target="http://x", secret="short", audience="officer")
    with pytest.raises(psycopg.errors.CheckViolation):
        add_channel(site, ChannelIn(kind="email", target="not-an-address", audience="officer"))
