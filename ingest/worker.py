"""An ingest worker: MQTT v5 persistent session on a shared subscription → batched writes.

Messages are acknowledged only after the transaction holding them commits (paho manual
ack), so a crash, a broker restart or a database outage loses nothing: the broker
redelivers what was not acknowledged and the ledger drops what was already written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from ingest import metrics
from ingest.decode import Accepted, DeadLetter, Reason, dead, decode
from ingest.writer import BatchResult, Directory, write_batch
from smartsite.protocol.messages import Telemetry
from smartsite.protocol.topics import ingest_filter
from smartsite.settings import MqttEndpoint, Settings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
DIRECTORY_TTL_S = 60.0
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(slots=True)
class _Pending:
    generation: int
    mid: int
    qos: int
    item: Accepted | DeadLetter | None


@dataclass
class IngestStats:
    received: int = 0
    written: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    batches: int = 0


def _rows(item: Accepted | DeadLetter | None) -> int:
    if isinstance(item, Accepted) and isinstance(item.message, Telemetry):
        return len(item.message.readings)
    return 1


def mqtt_client(
    endpoint: MqttEndpoint, client_id: str, *, persistent: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client for ``endpoint`` (v5 or 3.1.1), credentials and TLS applied."""
    kwargs: dict[str, object] = {}
    if endpoint.protocol == 4:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if endpoint.protocol == 5 else mqtt.MQTTv311,
        manual_ack=manual_ack,
        **kwargs,  # type: ignore[arg-type]
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def connect_kwargs(
    endpoint: MqttEndpoint, *, persistent: bool, receive_maximum: int | None = None
) -> dict[str, object]:
    if endpoint.protocol != 5:
        return {}
    props = Properties(PacketTypes.CONNECT)
    if persistent:
        props.SessionExpiryInterval = SESSION_EXPIRY_S
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return {"clean_start": not persistent, "properties": props}


class IngestWorker:
    """One worker; start several with the same ``shared_group`` to split the load."""

    def __init__(
        self,
        database_url: str,
        endpoint: MqttEndpoint,
        settings: Settings,
        *,
        name: str = "ingest-1",
        shared_group: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.endpoint = endpoint
        self.settings = settings
        self.name = name
        # MQTT 3.1.1 brokers (the amqtt fallback) have no shared subscriptions.
        group = shared_group or settings.ingest_shared_group
        self.shared_group = group if endpoint.protocol == 5 else None
        self.stats = IngestStats()
        self._directory = Directory()
        self._directory_loaded = 0.0
        self._buffer: list[_Pending] = []
        self._buffer_rows = 0
        self._buffer_since = 0.0
        self._cond = threading.Condition()
        self._generation = 0
        self._accepting = True
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._client = mqtt_client(endpoint, f"smartsite-{name}", persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-writer", daemon=True)
        self.connected = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> IngestWorker:
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(60),
            retry=retry_if_exception_type(CONNECTION_ERRORS),
            reraise=True,
        ):
            with attempt:
                self._db()  # the server may still be starting
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(60),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        ):
            with attempt:
                self._client.connect(
                    self.endpoint.host,
                    self.endpoint.port,
                    keepalive=30,
                    **connect_kwargs(
                        self.endpoint,
                        persistent=True,
                        receive_maximum=self.settings.ingest_receive_maximum,
                    ),
                )
        self._client.loop_start()
        self._writer.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: stop taking messages, flush and acknowledge what is buffered, disconnect."""
        with self._cond:
            self._accepting = False  # later deliveries stay unacked: redelivered next session
            self._stopping.set()
            self._cond.notify_all()
        self._writer.join(timeout)
        if self._writer.is_alive():
            self._abort.set()
            self._writer.join(5)
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()

    def wait_connected(self, timeout: float = 30.0) -> None:
        if not self.connected.wait(timeout):
            raise TimeoutError(f"{self.name}: no broker connection after {timeout}s")

    # --- MQTT callbacks (paho's network thread) -------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("%s: broker refused the connection: %s", self.name, reason)
            return
        with self._cond:
            # Acks for deliveries of an earlier connection must not be sent on this one.
            self._generation += 1
        # Subscribe even when the session is present: mosquitto 2.0 does not restore shared
        # subscriptions from its persistence file after a restart. Re-subscribing is harmless.
        client.subscribe(ingest_filter(self.settings.topic_prefix, self.shared_group), qos=1)
        log.info("%s: connected (session present: %s)", self.name, flags.session_present)
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("%s: broker connection lost (%s); reconnecting", self.name, reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            item = decode(self.settings.topic_prefix, msg.topic, msg.payload)
        except Exception as exc:  # never die on input
            log.exception("%s: decoding %s failed", self.name, msg.topic)
            item = dead(
                msg.topic, Reason.SCHEMA_MISMATCH, f"could not be decoded: {exc}", msg.payload
            )
        kind = item.topic.kind.value if isinstance(item, Accepted) else "invalid"
        metrics.RECEIVED.labels(kind).inc()
        with self._cond:
            if not self._accepting:
                return
            self.stats.received += 1
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append(_Pending(self._generation, msg.mid, msg.qos, item))
            self._buffer_rows += _rows(item)
            if self._buffer_rows >= self.settings.ingest_batch_rows:
                self._cond.notify()

    # --- writer thread ---------------------------------------------------------------------

    def _take_batch(self) -> list[_Pending] | None:
        with self._cond:
            while True:
                if self._buffer:
                    due = self._buffer_since + self.settings.ingest_batch_seconds
                    if (
                        self._buffer_rows >= self.settings.ingest_batch_rows
                        or time.monotonic() >= due
                        or self._stopping.is_set()
                    ):
                        batch, self._buffer, self._buffer_rows = self._buffer, [], 0
                        return batch
                    self._cond.wait(max(0.0, due - time.monotonic()))
                elif self._stopping.is_set():
                    return None
                else:
                    self._cond.wait(0.5)

    def _write_loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            items = [p.item for p in batch if p.item is not None]
            started = time.perf_counter()
            try:
                result = self._write_with_retry(items) if items else BatchResult()
            except _AbortedError:
                log.warning(
                    "%s: shutdown during a database outage; %d messages stay unacked",
                    self.name,
                    len(batch),
                )
                return
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            self._record(result)
            self._ack(batch)

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(
                self.database_url, application_name=f"smartsite-{self.name}"
            )
        if time.monotonic() - self._directory_loaded > DIRECTORY_TTL_S:
            self._directory.devices.clear()  # re-read registrations, deactivations, moves
            self._directory_loaded = time.monotonic()
        return self._conn

    def _write_with_retry(self, items: list[Accepted | DeadLetter]) -> BatchResult:
        def give_up(_state: RetryCallState) -> bool:
            return self._abort.is_set()

        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: database unavailable (%s); retrying", self.name, exc)

        try:
            for attempt in Retrying(
                wait=wait_exponential(multiplier=0.2, max=5),
                retry=retry_if_exception_type(CONNECTION_ERRORS),
                stop=give_up,
                before_sleep=note,
                reraise=True,
            ):
                with attempt:
                    conn = self._db()
                    try:
                        return write_batch(conn, self._directory, items)
                    except CONNECTION_ERRORS:
                        raise
                    except psycopg.Error as exc:
                        log.warning("%s: batch rejected (%s); writing one by one", self.name, exc)
                        return self._write_one_by_one(conn, items)
        except CONNECTION_ERRORS:
            raise _AbortedError from None
        raise AssertionError("unreachable")

    def _write_one_by_one(
        self, conn: psycopg.Connection, items: list[Accepted | DeadLetter]
    ) -> BatchResult:
        """Slow path after the database rejected a batch: isolate the bad messages."""
        total = BatchResult()
        for item in items:
            try:
                res = write_batch(conn, self._directory, [item])
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as exc:
                assert isinstance(item, Accepted)
                reason = f"the database refused it: {exc.diag.message_primary or exc}"
                res = write_batch(
                    conn,
                    self._directory,
                    [
                        dead(
                            item.raw_topic,
                            Reason.REJECTED_BY_DATABASE,
                            reason,
                            item.raw,
                            item.topic,
                        )
                    ],
                )
            total.written.update(res.written)
            total.duplicates += res.duplicates
            total.dead.extend(res.dead)
            total.gaps += res.gaps
        return total

    def _record(self, r: BatchResult) -> None:
        s = self.stats
        s.batches += 1
        for table, n in r.written.items():
            s.written[table] += n
            metrics.WRITTEN.labels(table).inc(n)
        s.duplicates += r.duplicates
        metrics.DUPLICATES.inc(r.duplicates)
        for d in r.dead:
            s.dead_lettered[d.reason_code.value] += 1
            metrics.DEAD_LETTERED.labels(d.reason_code.value).inc()
            log.warning("%s: dead-lettered %s: %s", self.name, d.topic, d.reason)
        s.gaps += r.gaps
        metrics.SEQUENCE_GAPS.inc(r.gaps)

    def _ack(self, batch: list[_Pending]) -> None:
        with self._cond:
            generation = self._generation
        for p in batch:
            if p.qos > 0 and p.generation == generation:
                self._client.ack(p.mid, p.qos)


class _AbortedError(Exception):
    """Shutdown was forced while the database was unreachable."""
