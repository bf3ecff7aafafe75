"""Alert latency under load (issue 5 acceptance): from the MQTT publish of a reading that
crosses an alarm level to the alert being readable through ``GET /api/alerts`` and to its
event arriving on the WebSocket ``/api/alerts/live``.

One process runs the whole hub path: the ingest worker, the alert engine and the API server
(uvicorn in a thread, on a free port), against the configured PostgreSQL and broker (or
embedded ones, as ``smartsite bench ingest`` starts them). A publisher keeps up a steady
background of normal telemetry (2,000 readings/s by default, tower-crane load moments well
under the warning level); another publishes, at a steady rate, one alarm-level reading on a
device of its own each time, so each opens exactly one alert. A poller reads the API every
few milliseconds and a WebSocket client listens; each notes when it first saw each alert.
"""

from __future__ import annotations

import contextlib
import math
import random
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from rich import box
from rich.console import Console
from rich.table import Table

from alerts.defaults import DEFAULT_RULES
from alerts.engine import AlertEngine
from alerts.rule_store import RuleChange, put_rule
from ingest.bench import bench_broker, close_client, connect_started, drop_session
from ingest.worker import IngestWorker
from smartsite.cli_support import wide
from smartsite.db import connect, ensure_database
from smartsite.db.migrate import upgrade
from smartsite.db.registry import (
    DeviceIn,
    PermitIn,
    ProjectIn,
    upsert_device,
    upsert_district,
    upsert_permit,
    upsert_project,
)
from smartsite.embedded import services
from smartsite.mqtt import make_client
from smartsite.protocol.messages import Reading, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import MqttEndpoint, Settings

PROJECT = "BENCH-ALERTS"
BG_GATEWAY = f"{PROJECT}-gw-bg"
ALARM_GATEWAY = f"{PROJECT}-gw-al"
TICK_S = 0.05  # the background publisher's pace: 20 bursts a second
READINGS_PER_MESSAGE = 20
ALARM_VALUE = 105.0  # % of the rated moment: past the 100 % alarm level
POLL_S = 0.005  # the API poller's pause between reads
SETTLE_S = 10.0  # after the last alarm reading, how long to wait for stragglers


@dataclass
class Seen:
    """When each alarm device's reading was published and its alert first seen."""

    published: dict[str, float] = field(default_factory=dict)
    api: dict[str, float] = field(default_factory=dict)
    ws: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, where: dict[str, float], device: str, at: float) -> None:
        with self.lock:
            where.setdefault(device, at)

    def latencies_ms(self, where: dict[str, float]) -> list[float]:
        with self.lock:
            return sorted((where[d] - t0) * 1000 for d, t0 in self.published.items() if d in where)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None for no data."""
    if not sorted_ms:
        return None
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- entry point ---------------------------------------------------------------------------


def run_bench(
    settings: Settings,
    console: Console,
    *,
    duration: float = 30.0,
    load: int = 2000,
    alert_rate: float = 5.0,
    warmup: float = 3.0,
    background_devices: int = 200,
) -> dict[str, Any]:
    """Run the hub under ``load`` readings/s for ``duration`` s, opening ``alert_rate`` alerts
    a second; print the latencies; return the figures (the CLI prints them as JSON)."""
    run = uuid.uuid4().hex[:8]
    n_alarms = max(1, math.ceil(duration * alert_rate))
    with (
        tempfile.TemporaryDirectory(prefix="smartsite-bench-") as tmp,
        bench_broker(settings, Path(tmp)) as endpoint,
        services(settings, need_mqtt=False) as svc,
    ):
        url = svc.database_url
        if settings.database_url:
            ensure_database(url)
        upgrade(url, settings)
        prefix = f"bench-{run}/v1"
        hub = settings.model_copy(
            update={
                "topic_prefix": prefix,
                "alerts_name": f"bench-{run}",
                "alerts_startup_grace_seconds": 3600.0,
            }
        )
        _cleanup(url)
        bg, alarms = _register(url, background_devices, n_alarms)
        username, password = f"bench-{run}", secrets.token_urlsafe(16)
        _admin(url, username, password)
        seen = Seen()
        console.print(
            f"alerts bench: {load:,} readings/s of background, {alert_rate:g} alerts/s for "
            f"{duration:g} s ({n_alarms} alerts) after {warmup:g} s of warm-up"
        )
        try:
            with (
                _hub(url, endpoint, hub) as (worker, engine),
                _api(hub, url) as base,
            ):
                token = _login(base, username, password)
                stop = threading.Event()
                threads = [
                    threading.Thread(
                        target=_background,
                        args=(endpoint, prefix, bg, load, stop),
                        name="bench-background",
                        daemon=True,
                    ),
                    threading.Thread(target=_poll_api, args=(base, token, seen, stop), daemon=True),
                    threading.Thread(
                        target=_listen_ws, args=(base, token, seen, stop), daemon=True
                    ),
                ]
                for t in threads:
                    t.start()
                try:
                    time.sleep(warmup)
                    sent = _alarms(endpoint, prefix, alarms, alert_rate, seen)
                    deadline = time.monotonic() + SETTLE_S
                    while time.monotonic() < deadline and (
                        len(seen.api) < len(sent) or len(seen.ws) < len(sent)
                    ):
                        time.sleep(0.05)
                finally:
                    stop.set()
                    for t in threads:
                        t.join(10)
                measured_load = _BG_STATS["readings"] / max(_BG_STATS["seconds"], 1e-9)
                ingested = worker.stats.written["telemetry"]
                judged = engine.stats.received
                extra = _unexpected_alerts(url)
        finally:
            drop_session(endpoint, f"smartsite-bench-{run}")
            drop_session(endpoint, f"smartsite-bench-{run}-ingest")
            _cleanup(url, username)
    api = seen.latencies_ms(seen.api)
    ws = seen.latencies_ms(seen.ws)
    _report(console, api, ws, n_alarms, measured_load, ingested, judged, extra)
    return {
        "bench": "alerts",
        "load_per_s": round(measured_load),
        "p50_ms": _r(percentile(api, 0.50)),
        "p95_ms": _r(percentile(api, 0.95)),
        "p99_ms": _r(percentile(api, 0.99)),
        "ws_p95_ms": _r(percentile(ws, 0.95)),
        "ws_p50_ms": _r(percentile(ws, 0.50)),
        "ws_p99_ms": _r(percentile(ws, 0.99)),
        "alerts": n_alarms,
        "api_seen": len(api),
        "ws_seen": len(ws),
        "unexpected_alerts": extra,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# --- setup and teardown --------------------------------------------------------------------


def _register(url: str, background: int, alarms: int) -> tuple[list[str], list[str]]:
    bg = [f"{PROJECT}-bg-{i:04d}" for i in range(background)]
    al = [f"{PROJECT}-al-{i:05d}" for i in range(alarms)]
    crane = next(
        d for d in DEFAULT_RULES if d.key == "device_silent" and d.device_kind == "tower_crane"
    )
    with connect(url) as conn, conn.transaction():
        upsert_district(conn, "110105", "朝阳区")
        upsert_project(
            conn,
            ProjectIn(id=PROJECT, name="Alert bench site", district_code="110105"),
        )
        today = datetime.now(UTC).date()
        upsert_permit(
            conn,
            PermitIn(
                number=f"SIM-{PROJECT}",
                project_id=PROJECT,
                issued_on=today - timedelta(days=30),
                expires_on=today + timedelta(days=365),
            ),
        )
        for gw in (BG_GATEWAY, ALARM_GATEWAY):
            upsert_device(conn, DeviceIn(id=gw, project_id=PROJECT, kind="gateway"))
        for devices, gw in ((bg, BG_GATEWAY), (al, ALARM_GATEWAY)):
            for dev in devices:
                upsert_device(
                    conn,
                    DeviceIn(
                        id=dev,
                        project_id=PROJECT,
                        kind="tower_crane",
                        gateway_id=gw,
                        rated={"moment_tm": 180.0},
                    ),
                )
        # an alarm device publishes once: its silence must not open alerts in a long run
        put_rule(
            conn,
            RuleChange(
                key="device_silent",
                device_kind="tower_crane",
                project_id=PROJECT,
                enabled=False,
                spec=crane.spec,
                note="alerts bench: devices publish once",
            ),
            by="bench",
        )
    return bg, al


def _admin(url: str, username: str, password: str) -> None:
    from server.users import UserIn, create_user

    with connect(url, autocommit=True) as conn:
        create_user(conn, UserIn(username=username, password=password, role="admin"))


def _cleanup(url: str, username: str | None = None) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM alert_state WHERE device_id IN"
            " (SELECT id FROM devices WHERE project_id = %s)",
            (PROJECT,),
        )
        conn.execute("DELETE FROM alerts WHERE project_id = %s", (PROJECT,))
        conn.execute("DELETE FROM telemetry WHERE project_id = %s", (PROJECT,))
        conn.execute(
            "DELETE FROM ingest_ledger WHERE device_id IN (%s, %s)", (BG_GATEWAY, ALARM_GATEWAY)
        )
        conn.execute("DELETE FROM dead_letters WHERE project_id = %s", (PROJECT,))
        conn.execute("DELETE FROM device_status WHERE project_id = %s", (PROJECT,))
        if username is not None:
            conn.execute("DELETE FROM users WHERE username = %s", (username,))


def _unexpected_alerts(url: str) -> int:
    """Alerts of the bench project other than one per alarm device (should be none)."""
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM alerts WHERE project_id = %s AND device_id NOT LIKE %s",
            (PROJECT, f"{PROJECT}-al-%"),
        ).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def _hub(
    url: str, endpoint: MqttEndpoint, settings: Settings
) -> Iterator[tuple[IngestWorker, AlertEngine]]:
    worker = IngestWorker(url, endpoint, settings, name=f"{settings.alerts_name}-ingest")
    worker.start().wait_connected()
    try:
        engine = AlertEngine(url, endpoint, settings).start()
        try:
            engine.wait_connected()
            yield worker, engine
        finally:
            engine.stop()
    finally:
        worker.stop()


@contextlib.contextmanager
def _api(settings: Settings, url: str) -> Iterator[str]:
    import uvicorn

    from server.app import create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, url), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _login(base: str, username: str, password: str) -> str:
    r = httpx.post(
        f"{base}/api/auth/login", json={"username": username, "password": password}, timeout=10
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


# --- load ----------------------------------------------------------------------------------

_BG_STATS: dict[str, float] = {"readings": 0, "seconds": 0.0}


def _publisher(endpoint: MqttEndpoint, name: str) -> mqtt.Client:
    client = make_client(endpoint, f"bench-{name}-{uuid.uuid4().hex[:8]}", persistent=False)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connect_started(client, endpoint)
    return client


def _background(
    endpoint: MqttEndpoint, prefix: str, devices: list[str], load: int, stop: threading.Event
) -> None:
    """Normal readings at ``load`` a second, in bursts every TICK_S, until ``stop``."""
    client = _publisher(endpoint, "bg")
    topic = build(prefix, PROJECT, BG_GATEWAY, Kind.TELEMETRY)
    rng = random.Random(7)  # noqa: S311 - sensor noise, not a secret
    seq, sent, k = 0, 0, 0
    start = time.monotonic()
    _BG_STATS.update(readings=0, seconds=0.0)
    try:
        while not stop.is_set():
            k += 1
            due = int(load * k * TICK_S) - sent  # readings owed by the end of this tick
            now = datetime.now(UTC)
            while due > 0:
                n = min(READINGS_PER_MESSAGE, due)
                readings = [
                    Reading(
                        metric="moment_pct",
                        value=round(rng.uniform(20, 70), 1),
                        unit="%",
                        source=devices[(sent + i) % len(devices)],
                    )
                    for i in range(n)
                ]
                seq += 1
                msg = Telemetry(device=BG_GATEWAY, seq=seq, ts=now, readings=readings)
                client.publish(topic, encode(msg), qos=1)
                sent += n
                due -= n
            _BG_STATS.update(readings=sent, seconds=time.monotonic() - start)
            pause = start + k * TICK_S - time.monotonic()
            if pause > 0:
                stop.wait(pause)
    finally:
        close_client(client)


def _alarms(
    endpoint: MqttEndpoint, prefix: str, devices: list[str], rate: float, seen: Seen
) -> list[str]:
    """One alarm-level reading per device, ``rate`` a second; publish times into ``seen``."""
    client = _publisher(endpoint, "alarm")
    topic = build(prefix, PROJECT, ALARM_GATEWAY, Kind.TELEMETRY)
    start = time.monotonic()
    try:
        for i, dev in enumerate(devices):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            msg = Telemetry(
                device=ALARM_GATEWAY,
                seq=i + 1,
                ts=datetime.now(UTC),
                readings=[Reading(metric="moment_pct", value=ALARM_VALUE, unit="%", source=dev)],
            )
            payload = encode(msg)
            with seen.lock:
                seen.published[dev] = time.monotonic()
            client.publish(topic, payload, qos=1)
    finally:
        close_client(client)
    return devices


# --- observers -----------------------------------------------------------------------------


def _poll_api(base: str, token: str, seen: Seen, stop: threading.Event) -> None:
    """Read the alert list over and over; note when each alarm device's alert first shows."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
        while not stop.is_set():
            with seen.lock:
                pending = [t for d, t in seen.published.items() if d not in seen.api]
            if not pending:
                stop.wait(POLL_S)
                continue
            # readings carry their publish time: alerts opened since the oldest one pending
            since = datetime.now(UTC) - timedelta(seconds=time.monotonic() - min(pending) + 1.0)
            r = http.get(
                "/api/alerts",
                params={
                    "project": PROJECT,
                    "rule": "crane_moment",
                    "since": since.isoformat(),
                    "limit": 500,
                },
            )
            got = time.monotonic()
            r.raise_for_status()
            for item in r.json()["items"]:
                seen.note(seen.api, item["device_id"], got)
            stop.wait(POLL_S)


def _listen_ws(base: str, token: str, seen: Seen, stop: threading.Event) -> None:
    """Listen on the live stream; note when each alarm device's 'open' event arrives."""
    import json

    from websockets.sync.client import connect as ws_connect

    url = base.replace("http://", "ws://") + f"/api/alerts/live?token={token}"
    with ws_connect(url, open_timeout=10) as ws:
        while not stop.is_set():
            try:
                raw = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            got = time.monotonic()
            event = json.loads(raw)
            if event.get("type") == "alert" and event.get("action") == "open":
                device = event.get("payload", {}).get("device_id")
                if device:
                    seen.note(seen.ws, device, got)


# --- report --------------------------------------------------------------------------------


def _report(
    console: Console,
    api: list[float],
    ws: list[float],
    alerts: int,
    load: float,
    ingested: int,
    judged: int,
    extra: int,
) -> None:
    table = Table(
        title="Alert latency: MQTT publish of an alarm reading → alert seen", box=box.SIMPLE
    )
    for col in ("path", "alerts seen", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col == "path" else "right", no_wrap=True)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:,.1f}"

    for name, xs in (("GET /api/alerts (poll)", api), ("WebSocket /api/alerts/live", ws)):
        table.add_row(
            name,
            f"{len(xs)} / {alerts}",
            fmt(percentile(xs, 0.5)),
            fmt(percentile(xs, 0.95)),
            fmt(percentile(xs, 0.99)),
            fmt(xs[-1] if xs else None),
        )
    wide(console).print(table)
    console.print(
        f"background load {load:,.0f} readings/s; ingest wrote {ingested:,} readings, "
        f"the engine judged {judged:,} messages; unexpected alerts: {extra}"
    )
    p95 = percentile(api, 0.95)
    verdict = "met" if p95 is not None and p95 < 500 and len(api) == alerts else "NOT met"
    console.print(f"[bold]target p95 < 500 ms (API-readable):[/bold] {verdict}")
