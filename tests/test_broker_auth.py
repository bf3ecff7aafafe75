"""Broker authentication on a real mosquitto: files written from the real registry, real
clients. Each device publishes only under its own id, the hub reads everything."""

from __future__ import annotations

import base64
import queue
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from conftest import count, wait_until
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from edge.simulator import gateway_id, register_site, run
from smartsite.broker_auth import (
    BrokerAuthError,
    hash_password,
    issue_credential,
    verify_password,
    write_broker_files,
)
from smartsite.db.registry import DeviceIn, ProjectIn, upsert_device, upsert_project
from smartsite.embedded import MosquittoBroker
from smartsite.protocol.topics import Kind, build, ingest_filter
from smartsite.settings import Settings

pytestmark = pytest.mark.skipif(
    MosquittoBroker.available() is None, reason="mosquitto is not installed"
)

PROJECT = "P-AUTH"
NOT_AUTHORIZED = 0x87
TIMEOUT = 5.0


@dataclass
class Client:
    """A paho MQTT 5 client whose callbacks land in queues the test reads."""

    client: mqtt.Client
    connack: ReasonCode
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    acks: queue.Queue[tuple[int, ReasonCode]] = field(default_factory=queue.Queue)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish with QoS 1 and return the broker's PUBACK reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        got_mid, code = self.acks.get(timeout=TIMEOUT)
        assert got_mid == mid
        return code

    def subscribe(self, topic_filter: str) -> None:
        granted: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.put(codes)
        self.client.subscribe(topic_filter, qos=1)
        assert [c.value for c in granted.get(timeout=TIMEOUT)] == [1]  # granted QoS 1

    def received(self, until: bytes) -> list[tuple[str, bytes]]:
        """Messages received up to and including the one whose payload is ``until``."""
        got: list[tuple[str, bytes]] = []
        while not got or got[-1][1] != until:
            got.append(self.messages.get(timeout=TIMEOUT))
        return got


@pytest.fixture
def connect(broker_files: tuple[MosquittoBroker, Settings]) -> Iterator:  # type: ignore[type-arg]
    broker = broker_files[0]
    opened: list[mqtt.Client] = []

    def connect(username: str | None, password: str | None) -> Client:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{username}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            c.username_pw_set(username, password)
        connacks: queue.Queue[ReasonCode] = queue.Queue()
        client = Client(c, ReasonCode(mqtt.PacketTypes.CONNACK, identifier=0))
        c.on_connect = lambda _c, _u, _f, code, _p: connacks.put(code)
        c.on_message = lambda _c, _u, m: client.messages.put((m.topic, m.payload))
        c.on_publish = lambda _c, _u, mid, code, _p: client.acks.put((mid, code))
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        opened.append(c)
        client.connack = connacks.get(timeout=TIMEOUT)
        if client.connack.is_failure:  # else paho retries the refused connection meanwhile
            c.disconnect()  # before loop_stop: it ends the loop without a reconnect wait
            c.loop_stop()
        return client

    yield connect
    for c in opened:
        c.disconnect()
        c.loop_stop()


def register(conn: psycopg.Connection, *devices: str) -> dict[str, str]:
    """Register the project and ``devices``, each with a fresh credential: id -> password."""
    upsert_project(conn, ProjectIn(id=PROJECT, name="Broker auth test site"))
    for d in devices:
        upsert_device(conn, DeviceIn(id=d, project_id=PROJECT, kind="gateway"))
    return {d: issue_credential(conn, d) for d in devices}


@pytest.fixture
def passwords(db: psycopg.Connection) -> dict[str, str]:
    return register(db, "gw-a", "gw-b")


@pytest.fixture
def broker_files(
    db: psycopg.Connection, passwords: dict[str, str], settings: Settings, tmp_path: Path
) -> Iterator[tuple[MosquittoBroker, Settings]]:
    """mosquitto started on files written from the registry, and the settings they used."""
    settings = settings.model_copy(update={"hub_mqtt_password": secrets.token_urlsafe(24)})
    files = write_broker_files(db, settings, tmp_path / "passwd", tmp_path / "acl")
    assert files.devices == sorted(passwords)
    broker = MosquittoBroker(
        tmp_path / "mosquitto", password_file=files.password_file, acl_file=files.acl_file
    ).start()
    yield broker, settings
    broker.stop()


def telemetry(settings: Settings, device: str) -> str:
    return build(settings.topic_prefix, PROJECT, device, Kind.TELEMETRY)


@pytest.mark.parametrize("shared_group", [None, "ingest"])
def test_device_publishes_under_its_own_id_and_the_hub_receives(
    broker_files, connect, passwords, shared_group
) -> None:  # type: ignore[no-untyped-def]
    _, settings = broker_files
    hub = connect(settings.hub_mqtt_username, settings.hub_mqtt_password)
    assert not hub.connack.is_failure
    hub.subscribe(ingest_filter(settings.topic_prefix, shared_group))  # what ingest subscribes
    gw = connect("gw-a", passwords["gw-a"])
    assert not gw.connack.is_failure

    evidence = build(settings.topic_prefix, PROJECT, "gw-a", Kind.EVIDENCE, "ev-1")
    assert gw.publish(telemetry(settings, "gw-a"), b"t1").value == 0
    assert gw.publish(evidence, b"jpeg").value == 0
    assert hub.received(until=b"jpeg") == [
        (telemetry(settings, "gw-a"), b"t1"),
        (evidence, b"jpeg"),
    ]


def test_device_cannot_publish_as_another_device_or_write_config(
    broker_files, connect, passwords
) -> None:  # type: ignore[no-untyped-def]
    _, settings = broker_files
    hub = connect(settings.hub_mqtt_username, settings.hub_mqtt_password)
    hub.subscribe(f"{settings.topic_prefix}/#")
    gw = connect("gw-a", passwords["gw-a"])
    prefix = settings.topic_prefix
    forged = [
        telemetry(settings, "gw-b"),  # another device's topic
        build(prefix, "OTHER", "gw-b", Kind.ALERT),  # ... in another project
        build(prefix, PROJECT, "gw-a", Kind.CONFIG),  # its own config is the hub's to write
        f"{prefix}/{PROJECT}/gw-a/telemetry/extra",  # not a protocol topic
        "elsewhere/gw-a/telemetry",  # outside the prefix
    ]
    for topic in forged:
        assert gw.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    # Messages of one connection arrive in order: had a forgery passed, it would come first.
    assert gw.publish(telemetry(settings, "gw-a"), b"marker").value == 0
    assert hub.received(until=b"marker") == [(telemetry(settings, "gw-a"), b"marker")]


def test_device_reads_only_its_own_config(broker_files, connect, passwords) -> None:  # type: ignore[no-untyped-def]
    _, settings = broker_files
    hub = connect(settings.hub_mqtt_username, settings.hub_mqtt_password)
    gw = connect("gw-a", passwords["gw-a"])
    # mosquitto grants the subscription and filters at delivery: assert what arrives.
    gw.subscribe(f"{settings.topic_prefix}/+/+/config")
    for device in ("gw-b", "gw-a"):
        topic = build(settings.topic_prefix, PROJECT, device, Kind.CONFIG)
        assert hub.publish(topic, f"config of {device}".encode()).value == 0
    config_a = build(settings.topic_prefix, PROJECT, "gw-a", Kind.CONFIG)
    assert gw.received(until=b"config of gw-a") == [(config_a, b"config of gw-a")]
    # The hub writes config, but not device data.
    assert hub.publish(telemetry(settings, "gw-a"), b"forged").value == NOT_AUTHORIZED


def test_wrong_password_and_anonymous_are_refused(broker_files, connect, passwords) -> None:  # type: ignore[no-untyped-def]
    _, settings = broker_files
    refused = {
        "wrong password": connect("gw-a", "not-the-password"),
        "another device's password": connect("gw-a", passwords["gw-b"]),
        "unknown user": connect("gw-z", passwords["gw-a"]),
        "anonymous": connect(None, None),
        "hub, wrong password": connect(settings.hub_mqtt_username, passwords["gw-a"]),
    }
    # mosquitto 2.0 answers a bad password with "Not authorized" rather than 0x86.
    assert {k: c.connack.value for k, c in refused.items()} == dict.fromkeys(
        refused, NOT_AUTHORIZED
    )
    assert not connect("gw-a", passwords["gw-a"]).connack.is_failure  # the same broker lets in


def test_reloaded_files_let_a_new_gateway_in_and_ingest_stores_its_data(
    db, pg_url, broker_files, connect, start_worker
) -> None:  # type: ignore[no-untyped-def]
    broker, settings = broker_files
    register_site(pg_url, "P-SIM", 3)
    gateway = gateway_id("P-SIM")
    password = issue_credential(db, gateway)
    assert connect(gateway, password).connack.value == NOT_AUTHORIZED  # not in the files yet
    # What an operator does after issuing a credential: rewrite the files, SIGHUP the broker.
    write_broker_files(db, settings, broker.password_file, broker.acl_file)
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not connect(gateway, password).connack.is_failure, timeout=10, what="reload")
    hub = settings.hub_mqtt_username, settings.hub_mqtt_password
    start_worker(pg_url, broker.endpoint.with_credentials(*hub))  # the real ingest, as the hub
    res = run(
        broker.endpoint.with_credentials(gateway, password),
        settings.topic_prefix,
        "P-SIM",
        3,
        rate=10,
        seconds=3,
        realtime=False,
    )
    wait_until(
        lambda: count(db, "SELECT count(*) FROM telemetry") >= res.readings,
        timeout=15,
        what="telemetry stored",
    )
    stored = {r[0] for r in db.execute("SELECT DISTINCT message_id FROM telemetry")}
    assert stored == set(res.ids)
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


def test_files_leave_out_inactive_and_uncredentialed_devices(
    db: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    passwords = register(db, "gw-a", "gw-off")
    upsert_device(db, DeviceIn(id="sensor-1", project_id=PROJECT, kind="dust", gateway_id="gw-a"))
    db.execute("UPDATE devices SET active = false WHERE id = 'gw-off'")
    settings = settings.model_copy(update={"hub_mqtt_password": "hub-secret"})
    files = write_broker_files(db, settings, tmp_path / "passwd", tmp_path / "acl")
    assert files.devices == ["gw-a"]
    lines = dict(line.split(":", 1) for line in files.password_file.read_text().splitlines())
    assert set(lines) == {"hub", "gw-a"}
    assert verify_password("hub-secret", lines["hub"])
    assert verify_password(passwords["gw-a"], lines["gw-a"])
    assert not verify_password(passwords["gw-off"], lines["gw-a"])
    assert files.password_file.stat().st_mode & 0o077 == 0  # hashes stay private
    assert (
        "pattern write " + settings.topic_prefix + "/+/%u/telemetry" in files.acl_file.read_text()
    )


def test_files_refuse_a_device_named_like_the_hub_and_a_missing_hub_password(
    db: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    register(db, "hub")
    with pytest.raises(BrokerAuthError, match="SMARTSITE_HUB_MQTT_PASSWORD"):
        write_broker_files(db, settings, tmp_path / "passwd", tmp_path / "acl")
    settings = settings.model_copy(update={"hub_mqtt_password": "hub-secret"})
    with pytest.raises(BrokerAuthError, match="hub's broker username"):
        write_broker_files(db, settings, tmp_path / "passwd", tmp_path / "acl")
    assert not (tmp_path / "passwd").exists()


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    pw_file = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", pw_file, "u", "pa:ss wörd"], check=True)
    theirs = pw_file.read_text().strip().split(":", 1)[1]
    _, kind, iterations, salt, _ = theirs.split("$")
    ours = hash_password("pa:ss wörd", iterations=int(iterations), salt=base64.b64decode(salt))
    assert (kind, ours) == ("7", theirs)
    assert verify_password("pa:ss wörd", theirs)
    assert not verify_password("pa:ss word", theirs)


def test_cli_issues_a_credential_and_writes_files_the_broker_accepts(
    db: psycopg.Connection, pg_url: str, settings: Settings, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from smartsite.cli import app
    from smartsite.settings import get_settings

    register(db, "gw-a", "gw-b")
    hub_password = secrets.token_urlsafe(24)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SMARTSITE_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("SMARTSITE_HUB_MQTT_PASSWORD", hub_password)
    monkeypatch.setenv("GW_SECRET", "from-a-secret-store")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        issued = runner.invoke(app, ["device", "credentials", "gw-a"])
        assert issued.exit_code == 0, issued.output
        password = issued.stdout.strip()
        assert len(password) >= 40 and "\n" not in password
        missing = runner.invoke(app, ["device", "credentials", "no-such-device"])
        assert missing.exit_code == 1
        from_env = runner.invoke(
            app, ["device", "credentials", "gw-b", "--password-env", "GW_SECRET"]
        )
        assert from_env.exit_code == 0, from_env.output
        assert "from-a-secret-store" not in from_env.output
        args = ["--password-file", str(tmp_path / "passwd"), "--acl-file", str(tmp_path / "acl")]
        written = runner.invoke(app, ["broker", "files", *args])
        assert written.exit_code == 0, written.output
    finally:
        get_settings.cache_clear()
    broker = MosquittoBroker(
        tmp_path / "mosquitto", password_file=tmp_path / "passwd", acl_file=tmp_path / "acl"
    ).start()
    try:
        for user, pw, ok in [
            ("gw-a", password, True),
            ("hub", hub_password, True),
            ("gw-b", "from-a-secret-store", True),
            ("gw-a", "from-a-secret-store", False),
        ]:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            c.username_pw_set(user, pw)
            codes: queue.Queue[ReasonCode] = queue.Queue()
            c.on_connect = lambda _c, _u, _f, code, _p, q=codes: q.put(code)
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            try:
                assert codes.get(timeout=TIMEOUT).is_failure is not ok, user
            finally:
                c.disconnect()
                c.loop_stop()
    finally:
        broker.stop()
