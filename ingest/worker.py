"""An ingest worker: an MQTT persistent session in this process, a store process beside it.

Messages are acknowledged only after the store process has committed the transaction
holding them (paho manual ack), so a crash, a broker restart or a database outage loses
nothing: the broker redelivers what was not acknowledged and the ledger drops what was
already written. Several workers split the load on a shared subscription.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import paho.mqtt.client as mqtt

from ingest import metrics
from ingest.store import Outcome, store_main
from smartsite.mqtt import Delivery, ack, connect_persistent, make_client, ready_at_suback
from smartsite.protocol.topics import ingest_filter
from smartsite.settings import MqttEndpoint, Settings

log = logging.getLogger(__name__)

BATCHES_PER_STORE = 2  # one being written, one ready: a store never waits for the receiver


@dataclass
class IngestStats:
    received: int = 0
    written: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    batches: int = 0


class IngestWorker:
    """One worker; start several with the same shared group to split the load."""

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
        group = shared_group or settings.ingest_shared_group
        # MQTT 3.1.1 brokers (the amqtt fallback) have no shared subscriptions.
        self.shared_group = group if endpoint.protocol == 5 else None
        self.stats = IngestStats()
        self.connected = threading.Event()
        self._cond = threading.Condition()
        self._buffer: list[Delivery] = []
        self._buffer_since = 0.0
        # (store index, sent at, batch), oldest first: outcomes are collected in this order
        # so acknowledgements go out in the order the messages came (MQTT 4.6).
        self._in_flight: deque[tuple[int, float, list[Delivery]]] = deque()
        self._sent = 0
        self._generation = 0
        self._accepting = True
        self._stopping = False
        self._client = make_client(endpoint, f"smartsite-{name}", persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = ready_at_suback(self.connected, self.name)
        self._stores: list[_StoreHandle] = []
        self._feeder = threading.Thread(target=self._feed, name=f"{name}-feed", daemon=True)
        self._collector = threading.Thread(target=self._collect, name=f"{name}-acks", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------

    def prepare(self, timeout: float = 60.0) -> IngestWorker:
        """Start the store process and wait until it is ready (imports take a moment)."""
        if not self._stores:
            self._stores = [
                _StoreHandle.spawn(self.database_url, self.settings, f"{self.name}-store{i + 1}")
                for i in range(self.settings.ingest_store_processes)
            ]
            for s in self._stores:
                if not s.outcomes.poll(timeout) or s.outcomes.recv() != "ready":
                    raise RuntimeError(f"{s.name}: the store process did not start")
        return self

    def start(self) -> IngestWorker:
        """Start the store process if not yet, then connect and consume."""
        self.prepare()
        connect_persistent(
            self._client, self.endpoint, receive_maximum=self.settings.ingest_receive_maximum
        )
        self._client.loop_start()
        self._feeder.start()
        self._collector.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: stop taking messages, write and acknowledge what is buffered, disconnect."""
        with self._cond:
            self._accepting = False  # later deliveries stay unacked: redelivered next session
            self._stopping = True
            self._cond.notify_all()
        self._feeder.join(timeout)
        self._collector.join(timeout)
        if self._collector.is_alive():
            log.warning(
                "%s: store still busy after %ss (database away?); %d batches stay "
                "unacknowledged for redelivery",
                self.name,
                timeout,
                len(self._in_flight),
            )
        self._client.disconnect()
        self._client.loop_stop()
        for s in self._stores:
            s.process.join(5)
            if s.process.is_alive():
                s.process.terminate()

    def wait_connected(self, timeout: float = 30.0) -> None:
        if not self.connected.wait(timeout):
            raise TimeoutError(f"{self.name}: no broker connection after {timeout}s")

    # --- MQTT callbacks (paho's network thread): as little work as possible ---------------

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

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("%s: broker connection lost (%s); reconnecting", self.name, reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            if not self._accepting:
                return
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append(
                Delivery(self._generation, msg.mid, msg.qos, msg.topic, msg.payload)
            )
            if len(self._buffer) >= self.settings.ingest_batch_messages:
                self._cond.notify_all()

    # --- feeder: buffer → store process ------------------------------------------------------

    def _take_batch(self) -> tuple[int, list[Delivery]] | None:
        s = self.settings
        with self._cond:
            while True:
                room = len(self._in_flight) < BATCHES_PER_STORE * len(self._stores)
                if self._buffer and room:
                    due = self._buffer_since + s.ingest_batch_seconds
                    if (
                        len(self._buffer) >= s.ingest_batch_messages
                        or time.monotonic() >= due
                        or self._stopping
                    ):
                        batch, self._buffer = self._buffer, []
                        store = self._sent % len(self._stores)
                        self._sent += 1
                        self._in_flight.append((store, time.perf_counter(), batch))
                        return store, batch
                    self._cond.wait(max(0.0, due - time.monotonic()))
                elif self._stopping and not self._buffer:
                    return None
                else:
                    self._cond.wait(0.5)

    def _feed(self) -> None:
        try:
            while (taken := self._take_batch()) is not None:
                store, batch = taken
                self._stores[store].batches.send([(p.topic, p.payload) for p in batch])
            for s in self._stores:
                s.batches.send(None)
        except (BrokenPipeError, OSError):
            log.error(
                "%s: store process is gone; unacknowledged messages will be redelivered "
                "on the next connection",
                self.name,
            )

    # --- collector: outcomes → stats and acks ------------------------------------------------

    def _collect(self) -> None:
        while True:
            with self._cond:
                if self._stopping and not self._in_flight and not self._buffer:
                    return
                if not self._in_flight:
                    self._cond.wait(0.2)
                    continue
                store = self._stores[self._in_flight[0][0]]
            if not store.outcomes.poll(0.2):
                if not store.process.is_alive():
                    log.error(
                        "%s: store process died (exit %s); unacknowledged messages will be "
                        "redelivered on the next connection",
                        store.name,
                        store.process.exitcode,
                    )
                    return
                continue
            try:
                outcome: Outcome = store.outcomes.recv()
            except EOFError:
                return
            with self._cond:
                _, started, batch = self._in_flight.popleft()
                generation = self._generation
                self._cond.notify_all()
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            self._record(outcome, len(batch))
            ack(self._client, batch, generation)

    def _record(self, o: Outcome, messages: int) -> None:
        s = self.stats
        s.batches += 1
        s.received += messages
        for kind, n in o.kinds.items():
            metrics.RECEIVED.labels(kind).inc(n)
        for table, n in o.written.items():
            s.written[table] += n
            metrics.WRITTEN.labels(table).inc(n)
        s.duplicates += o.duplicates
        metrics.DUPLICATES.inc(o.duplicates)
        for reason, n in o.dead.items():
            s.dead_lettered[reason] += n
            metrics.DEAD_LETTERED.labels(reason).inc(n)


@dataclass
class _StoreHandle:
    """A store process and its two one-way pipes."""

    name: str
    process: mp.process.BaseProcess
    batches: Connection
    outcomes: Connection

    @classmethod
    def spawn(cls, database_url: str, settings: Settings, name: str) -> _StoreHandle:
        ctx = mp.get_context("spawn")  # no forked copies of paho's threads and sockets
        batches_in, batches_out = ctx.Pipe(duplex=False)
        outcomes_in, outcomes_out = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=store_main,
            args=(
                batches_in,
                outcomes_out,
                database_url,
                settings,
                name,
                logging.getLogger().getEffectiveLevel(),
            ),
            name=name,
            daemon=True,
        )
        process.start()
        return cls(name, process, batches_out, outcomes_in)
