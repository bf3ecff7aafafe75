"""The embedded default requires passwords: its mosquitto admits the hub and provisioned
devices only, each device on its own topics; `smartsite simulate` provisions its gateway,
also into a `smartsite hub` running in another process of the same home."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from conftest import count, wait_until

from edge.simulator import gateway_id, plan_devices, register_site
from smartsite.embedded import EmbeddedPostgres, MosquittoBroker, provision_device, services
from smartsite.protocol.topics import Kind, build
from smartsite.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.skipif(
    MosquittoBroker.available() is None, reason="mosquitto is not installed"
)

NOT_AUTHORIZED = 0x87  # mosquitto 2.0's answer to a bad or missing password, and to an ACL
NO_SUBSCRIBERS = 0x10  # a successful PUBACK
TIMEOUT = 5.0


class Session:
    """One real MQTT connection: the broker's CONNACK, then QoS 1 publishes and PUBACKs."""

    def __init__(self, endpoint: MqttEndpoint) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if endpoint.username is not None:
            self.client.username_pw_set(endpoint.username, endpoint.password)
        connacks: queue.Queue[int] = queue.Queue()
        self.acks: queue.Queue[int] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, code, _p: connacks.put(code.value)
        self.client.on_publish = lambda _c, _u, _mid, code, _p: self.acks.put(code.value)
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()
        self.connack = connacks.get(timeout=TIMEOUT)

    def publish(self, topic: str) -> int:
        self.client.publish(topic, b"{}", qos=1)
        return self.acks.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()  # before loop_stop: no reconnect attempt in between
        self.client.loop_stop()


@contextlib.contextmanager
def session(endpoint: MqttEndpoint) -> Iterator[Session]:
    s = Session(endpoint)
    try:
        yield s
    finally:
        s.close()


def login(endpoint: MqttEndpoint) -> int:
    """The CONNACK reason code the broker answers ``endpoint``'s credentials with."""
    with session(endpoint) as s:
        return s.connack


def test_embedded_mosquitto_admits_the_hub_and_provisioned_devices_only(
    db: psycopg.Connection, pg_url: str, settings: Settings
) -> None:
    # The configured test database as the registry, the broker embedded (MQTT_URL unset).
    settings = settings.model_copy(update={"database_url": pg_url})
    register_site(pg_url, "P-EMB", 2)
    gateway = gateway_id("P-EMB")
    sensor = plan_devices("P-EMB", 2)[0][0]
    with services(settings) as svc:
        hub_file = settings.home / "hub-mqtt.password"
        assert (svc.mqtt.username, svc.mqtt.password) == ("hub", hub_file.read_text().strip())
        assert hub_file.stat().st_mode & 0o077 == 0
        assert login(svc.mqtt) == 0
        refused = {
            "anonymous": svc.mqtt.with_credentials(None, None),
            "hub, wrong password": svc.mqtt.with_credentials("hub", "not-the-password"),
            "registered gateway, no credential yet": svc.mqtt.with_credentials(gateway, "guess"),
        }
        assert {k: login(e) for k, e in refused.items()} == dict.fromkeys(refused, NOT_AUTHORIZED)

        first = provision_device(settings, svc, gateway)  # the broker reloads meanwhile
        assert first.username == gateway
        own = build(settings.topic_prefix, "P-EMB", gateway, Kind.TELEMETRY)
        others = build(settings.topic_prefix, "P-EMB", sensor, Kind.TELEMETRY)
        with session(first) as gw:
            assert gw.connack == 0
            assert gw.publish(own) == NO_SUBSCRIBERS  # accepted; nobody subscribes here
            assert gw.publish(others) == NOT_AUTHORIZED  # the ACL: its own topics only

        second = provision_device(settings, svc, gateway)
        assert login(second) == 0
        assert login(first) == NOT_AUTHORIZED  # a fresh credential retires the previous one
        assert login(svc.mqtt) == 0  # rewritten files keep the hub's password

        # Another process of this home reuses the running broker, with the same hub login.
        with services(settings) as again:
            assert again.embedded == []
            assert again.mqtt == svc.mqtt


def _cli_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "MQTT_URL") and not k.startswith("SMARTSITE_")
    }
    env.update(SMARTSITE_HOME=str(home), COLUMNS="200")
    return env


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "smartsite.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_simulate_into_a_running_hub_on_the_embedded_default(tmp_path: Path) -> None:
    home = tmp_path / "smartsite-home"
    env = _cli_env(home)
    hub_log = tmp_path / "hub.out"
    with hub_log.open("w") as out:
        hub = subprocess.Popen(
            [sys.executable, "-m", "smartsite.cli", "hub"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    broker_log = home / "mosquitto" / "mosquitto.log"
    try:
        wait_until(
            lambda: "Ctrl-C stops" in hub_log.read_text() or hub.poll() is not None,
            timeout=120,
            what="the hub to start",
        )
        assert hub.poll() is None, hub_log.read_text()
        # ingest has logged in as the hub (it subscribes on connect), so nothing is missed
        wait_until(
            lambda: broker_log.exists() and "as smartsite-ingest-1 " in broker_log.read_text(),
            timeout=30,
            what="ingest to connect",
        )
        port = json.loads((home / "broker.json").read_text())["port"]
        broker = MqttEndpoint(host="127.0.0.1", port=port)
        hub_password = (home / "hub-mqtt.password").read_text().strip()
        assert login(broker) == NOT_AUTHORIZED  # anonymous
        assert login(broker.with_credentials("hub", hub_password + "x")) == NOT_AUTHORIZED

        sim = ["simulate", "--project", "SIM-AUTH", "--devices", "3", "--rate", "5"]
        rc, out = _cli(env, *sim, "--seconds", "2", "--no-realtime")
        assert rc == 0, out
        m = re.search(r"published (\d+) messages \((\d+) readings\)", out)
        assert m, out
        messages, readings = int(m[1]), int(m[2])
        assert messages > 0

        # Without --register nothing gives the gateway a credential: refused, and said so.
        rc, out = _cli(env, *sim, "--seconds", "1", "--no-realtime", "--no-register")
        assert rc == 1 and "Not authorized" in out, out

        pg = EmbeddedPostgres(home / "pgdata").start()  # the hub's, as simulate attaches
        try:
            with psycopg.connect(pg.url, autocommit=True) as conn:
                project = "SELECT count(*) FROM telemetry WHERE project_id = 'SIM-AUTH'"
                wait_until(
                    lambda: count(conn, project) >= readings, timeout=30, what="telemetry stored"
                )
                assert count(conn, project) == readings
                assert count(conn, project.replace("count(*)", "count(DISTINCT message_id)")) == (
                    messages
                )
                assert count(conn, "SELECT count(*) FROM dead_letters") == 0
        finally:
            pg.stop()
    finally:
        if hub.poll() is None:
            hub.send_signal(signal.SIGINT)  # Ctrl-C: the hub stops its broker and database
            try:
                hub.wait(timeout=60)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait()
    assert hub.returncode == 0, hub_log.read_text()
    assert not (home / "broker.json").exists()
