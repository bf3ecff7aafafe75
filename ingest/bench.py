"""Ingest throughput on this machine: the ingest worker vs a count-only subscriber vs a naive
INSERT-per-message ingestor, each draining the same pre-published backlog from a real broker.

Every consumer gets its own topic prefix and persistent session, created before its messages
are published (QoS 1, all PUBACKs awaited), so the broker queues the backlog for that consumer
alone; only the draining is timed.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import psycopg
from rich import box
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from edge.simulator import SiteModel, register_site
from ingest.worker import IngestWorker
from smartsite.cli_support import wide
from smartsite.db import connect, ensure_database
from smartsite.db.migrate import upgrade
from smartsite.embedded import MosquittoBroker, services
from smartsite.mqtt import connect_kwargs, make_client
from smartsite.protocol.messages import encode
from smartsite.protocol.topics import Kind, build, ingest_filter
from smartsite.settings import MqttEndpoint, Settings

PROJECT = "BENCH-INGEST"
SEED = 7
PUBLISH_WINDOW = 10_000
STALL_S = 30.0  # no progress for this long: something is lost, give up
NAIVE_INSERT = (
    "INSERT INTO telemetry (time, project_id, device_id, metric, value, unit, message_id) VALUES "
)
NAIVE_ROW = "(%s, %s, %s, %s, %s, %s, %s)"


@dataclass(frozen=True)
class Backlog:
    """Pre-encoded telemetry of one gateway and the readings each message carries."""

    gateway: str
    payloads: list[bytes]
    readings: list[int]

    def head(self, n: int) -> Backlog:
        return Backlog(self.gateway, self.payloads[:n], self.readings[:n])

    def topic(self, prefix: str) -> str:
        return build(prefix, PROJECT, self.gateway, Kind.TELEMETRY)


@dataclass(frozen=True)
class Drain:
    """One consumer's timed draining of its backlog."""

    name: str
    messages: int
    readings: int
    seconds: float
    cpu_seconds: float  # of this Python process (the receiver for the worker), all threads
    machine_busy: float  # share of all cores busy meanwhile (store processes, PostgreSQL...)

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds


class _Clock:
    """Wall time, this process's CPU time and the machine's busy time, from one start."""

    def __init__(self) -> None:
        self.wall, self.cpu, self.machine = time.perf_counter(), time.process_time(), _busy()

    def drain(self, name: str, backlog: Backlog, done: float) -> Drain:
        seconds = done - self.wall
        busy = (_busy() - self.machine) / (seconds * (psutil.cpu_count() or 1))
        return Drain(
            name,
            len(backlog.payloads),
            sum(backlog.readings),
            seconds,
            time.process_time() - self.cpu,
            min(busy, 1.0),
        )


def _busy() -> float:
    t = psutil.cpu_times()
    return float(
        t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
    )


# --- entry point ---------------------------------------------------------------------------


def run_bench(
    settings: Settings, console: Console, *, messages: int, naive_messages: int, devices: int
) -> dict[str, object]:
    """Measure the three consumers one after another; print a table; return the figures."""
    run = uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory(prefix="smartsite-bench-") as tmp,
        bench_broker(settings, Path(tmp)) as endpoint,
        services(settings, need_mqtt=False) as svc,
        _progress(console) as progress,
    ):
        url = svc.database_url
        if settings.database_url:
            ensure_database(url)
        upgrade(url, settings)
        register_site(url, PROJECT, devices)
        backlog = _generate(max(messages, naive_messages), devices, progress)
        try:
            ingest = _bench_worker(url, endpoint, settings, run, backlog.head(messages), progress)
            count = _bench_count_only(endpoint, settings, run, backlog.head(messages), progress)
            naive = _bench_naive(
                url, endpoint, settings, run, backlog.head(naive_messages), progress
            )
        finally:
            _cleanup(url, backlog.gateway)
    _report(console, ingest, count, naive)
    return {
        "bench": "ingest",
        "readings_per_s": round(ingest.readings_per_s),
        "count_only_per_s": round(count.readings_per_s),
        "naive_per_s": round(naive.readings_per_s),
        "ratio_vs_count_only": round(ingest.readings_per_s / count.readings_per_s, 3),
        "ratio_vs_naive": round(ingest.readings_per_s / naive.readings_per_s, 2),
    }


@contextlib.contextmanager
def bench_broker(settings: Settings, tmp: Path) -> Iterator[MqttEndpoint]:
    """The configured broker, else a dedicated mosquitto in ``tmp``."""
    if settings.mqtt_url:
        yield MqttEndpoint.from_url(settings.mqtt_url)
        return
    broker = MosquittoBroker(tmp / "mosquitto").start()
    try:
        yield broker.endpoint
    finally:
        broker.stop()


@contextlib.contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    with Progress(
        *Progress.get_default_columns(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        yield progress


def _generate(n: int, devices: int, progress: Progress) -> Backlog:
    model = SiteModel(PROJECT, devices, seed=SEED)
    payloads: list[bytes] = []
    readings: list[int] = []
    task = progress.add_task("generate messages", total=n)
    t = 0.0
    while len(payloads) < n:
        for msg in model.tick(t):
            payloads.append(encode(msg))
            readings.append(len(msg.readings))
            if len(payloads) == n:
                break
        progress.update(task, completed=len(payloads))
        t += 1.0
    return Backlog(model.gateway, payloads, readings)


def _cleanup(url: str, gateway: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM telemetry WHERE project_id = %s", (PROJECT,))
        conn.execute("DELETE FROM ingest_ledger WHERE device_id = %s", (gateway,))
        conn.execute("DELETE FROM dead_letters WHERE project_id = %s", (PROJECT,))


# --- MQTT plumbing -------------------------------------------------------------------------


def connect_started(client: mqtt.Client, endpoint: MqttEndpoint, **kwargs: object) -> None:
    client.connect(endpoint.host, endpoint.port, keepalive=30, **kwargs)  # type: ignore[arg-type]
    client.loop_start()


def close_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def _create_session(endpoint: MqttEndpoint, client_id: str, topic_filter: str) -> None:
    """A persistent session subscribed to ``topic_filter`` (QoS 1), left offline."""
    client = make_client(endpoint, client_id, persistent=True)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    connect_started(client, endpoint, **connect_kwargs(endpoint, persistent=True))
    client.subscribe(topic_filter, qos=1)
    try:
        if not subscribed.wait(30):
            raise TimeoutError(f"no SUBACK for {topic_filter!r}")
    finally:
        close_client(client)


def drop_session(endpoint: MqttEndpoint, client_id: str) -> None:
    """Forget a persistent session (matters on a shared, configured broker)."""
    client = make_client(endpoint, client_id, persistent=False)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    connect_started(client, endpoint, **connect_kwargs(endpoint, persistent=False))
    connected.wait(10)
    close_client(client)


def _publish(endpoint: MqttEndpoint, topic: str, payloads: list[bytes], progress: Progress) -> None:
    """Publish QoS 1 and wait for every PUBACK: the backlog is then queued in the broker.

    At most PUBLISH_WINDOW unacknowledged at a time: paho's message ids wrap at 65535, and a
    queued message whose id is reused is silently replaced.
    """
    client = make_client(endpoint, f"bench-pub-{uuid.uuid4().hex[:8]}", persistent=False)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    window = threading.Semaphore(PUBLISH_WINDOW)
    acked = [0]

    def on_publish(*_a: object) -> None:
        acked[0] += 1
        window.release()

    client.on_publish = on_publish
    connect_started(client, endpoint)
    try:
        for payload in payloads:
            if not window.acquire(timeout=STALL_S):
                raise TimeoutError(f"no PUBACK for {STALL_S:.0f}s ({acked[0]} acknowledged)")
            client.publish(topic, payload, qos=1)
        _wait(lambda: acked[0], len(payloads), progress, "publish (QoS 1, PUBACKs)")
    finally:
        close_client(client)


def _wait(count: Callable[[], int], target: int, progress: Progress, what: str) -> float:
    """Poll ``count`` until it reaches ``target``; the time it did (perf_counter)."""
    task = progress.add_task(what, total=target)
    last, last_change = -1, time.perf_counter()
    while True:
        n, now = count(), time.perf_counter()
        progress.update(task, completed=n)
        if n >= target:
            return now
        if n != last:
            last, last_change = n, now
        elif now - last_change > STALL_S:
            raise TimeoutError(f"{what}: stuck at {n} of {target} for {STALL_S:.0f}s")
        time.sleep(0.01)


# --- the three consumers -------------------------------------------------------------------


def _bench_worker(
    url: str,
    endpoint: MqttEndpoint,
    settings: Settings,
    run: str,
    backlog: Backlog,
    progress: Progress,
) -> Drain:
    prefix = f"bench-{run}/ingest"
    worker_settings = settings.model_copy(update={"topic_prefix": prefix})
    name = f"bench-{run}-ingest"
    worker = IngestWorker(url, endpoint, worker_settings, name=name)
    client_id = f"smartsite-{name}"  # IngestWorker's client id
    _create_session(endpoint, client_id, ingest_filter(prefix, worker.shared_group))
    _publish(endpoint, backlog.topic(prefix), backlog.payloads, progress)
    total = sum(backlog.readings)
    worker.prepare()  # the store process's start-up is not part of the sustained rate
    clock = _Clock()
    worker.start()
    try:
        done = _wait(
            lambda: worker.stats.written["telemetry"], total, progress, "ingest worker (readings)"
        )
    finally:
        worker.stop()
        drop_session(endpoint, client_id)
    return clock.drain("ingest worker", backlog, done)


def _drain_subscriber(
    endpoint: MqttEndpoint,
    settings: Settings,
    client_id: str,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None],
    count: Callable[[], int],
    backlog: Backlog,
    progress: Progress,
    name: str,
) -> Drain:
    """Time a plain subscriber draining its pre-created session's backlog."""
    client = make_client(endpoint, client_id, persistent=True)
    client.on_message = on_message
    kwargs = connect_kwargs(
        endpoint, persistent=True, receive_maximum=settings.ingest_receive_maximum
    )
    clock = _Clock()
    connect_started(client, endpoint, **kwargs)
    try:
        done = _wait(count, len(backlog.payloads), progress, f"{name} (messages)")
    finally:
        close_client(client)
        drop_session(endpoint, client_id)
    return clock.drain(name, backlog, done)


def _bench_count_only(
    endpoint: MqttEndpoint, settings: Settings, run: str, backlog: Backlog, progress: Progress
) -> Drain:
    prefix, client_id = f"bench-{run}/count", f"bench-{run}-count"
    _create_session(endpoint, client_id, ingest_filter(prefix, None))
    _publish(endpoint, backlog.topic(prefix), backlog.payloads, progress)
    received = [0]

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        received[0] += 1

    return _drain_subscriber(
        endpoint,
        settings,
        client_id,
        on_message,
        lambda: received[0],
        backlog,
        progress,
        "count-only",
    )


class _NaiveIngestor:
    """json.loads, then one autocommitted INSERT per message carrying all its readings."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None
        self.inserted = 0

    def on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self.conn is None:
            self.conn = psycopg.connect(self.url, autocommit=True)
        m = json.loads(msg.payload)
        _prefix, project, device, _kind = msg.topic.rsplit("/", 3)
        rows = m["readings"]
        params = [
            v
            for r in rows
            for v in (
                r.get("time", m["ts"]),
                project,
                r.get("source", device),
                r["metric"],
                r["value"],
                r["unit"],
                m["id"],
            )
        ]
        self.conn.execute(NAIVE_INSERT + ", ".join([NAIVE_ROW] * len(rows)), params)
        self.inserted += 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _bench_naive(
    url: str,
    endpoint: MqttEndpoint,
    settings: Settings,
    run: str,
    backlog: Backlog,
    progress: Progress,
) -> Drain:
    prefix, client_id = f"bench-{run}/naive", f"bench-{run}-naive"
    _create_session(endpoint, client_id, ingest_filter(prefix, None))
    _publish(endpoint, backlog.topic(prefix), backlog.payloads, progress)
    naive = _NaiveIngestor(url)
    try:
        return _drain_subscriber(
            endpoint,
            settings,
            client_id,
            naive.on_message,
            lambda: naive.inserted,
            backlog,
            progress,
            "naive INSERT",
        )
    finally:
        naive.close()


# --- report --------------------------------------------------------------------------------


def _limit(ingest: Drain, count: Drain) -> str:
    ratio = ingest.readings_per_s / count.readings_per_s
    if ratio >= 0.95:
        return f"the broker → client path: the worker runs at {ratio:.0%} of a count-only client"
    limit = (
        f"CPU: the machine was {ingest.machine_busy:.0%} busy while the worker drained "
        f"(receiver {ingest.cpu_share:.0%} of a core, the rest store processes decoding with "
        "pydantic and formatting COPY, PostgreSQL writing the ledger and rows, mosquitto)"
    )
    if count.cpu_share >= 0.9:
        limit += (
            f"; the count-only ceiling is paho's per-message cost ({count.cpu_share:.0%} of a "
            "core), not the broker"
        )
    return limit


def _report(console: Console, ingest: Drain, count: Drain, naive: Drain) -> None:
    table = Table(title="Ingest throughput (one worker, drained backlog)", box=box.SIMPLE)
    cols = (
        "consumer",
        "messages",
        "readings",
        "seconds",
        "readings/s",
        "msgs/s",
        "py CPU",
        "machine",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "consumer" else "right", no_wrap=True)
    for d in (ingest, count, naive):
        table.add_row(
            d.name,
            f"{d.messages:,}",
            f"{d.readings:,}",
            f"{d.seconds:.2f}",
            f"{d.readings_per_s:,.0f}",
            f"{d.messages / d.seconds:,.0f}",
            f"{d.cpu_share:.0%}",
            f"{d.machine_busy:.0%}",
        )
    wide(console).print(table)
    console.print(
        f"ingest / count-only: {ingest.readings_per_s / count.readings_per_s:.2f}   "
        f"ingest / naive: {ingest.readings_per_s / naive.readings_per_s:.1f}x"
    )
    console.print(f"[bold]limited by:[/bold] {_limit(ingest, count)}")
