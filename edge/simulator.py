"""Site simulator: realistic sensor telemetry through the real protocol.

One MQTT connection per project gateway carries many devices (ThingsBoard gateway style):
each message is one device's readings at one instant, ``source`` naming the device. The
gateway has a retained ``status`` topic with an MQTT last will. Values follow simple
physical models with occasional excursions past the warning and alarm levels and
occasional silent devices, so rules downstream have something to find.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import paho.mqtt.client as mqtt

from smartsite.mqtt import make_client
from smartsite.protocol import limits
from smartsite.protocol.messages import Reading, State, Status, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import MqttEndpoint

SENSOR_KINDS = ("tower_crane", "hoist", "foundation_pit", "high_formwork", "dust", "noise")


@dataclass
class SimDevice:
    id: str
    kind: str
    rng: random.Random
    phase: float = 0.0
    silent_until: float = -1.0
    state: dict[str, float] = field(default_factory=dict)

    def readings(self, t: float, excursion: bool) -> list[tuple[str, float, str]]:
        """(metric, value, unit) at ``t`` seconds since start."""
        r, k = self.rng, self.kind
        if k == "tower_crane":
            cycle = (t / 90.0 + self.phase) % 1.0  # a lift every 90 s
            load = 0.3 + 5.5 * math.sin(math.pi * cycle) ** 2 + r.gauss(0, 0.05)
            radius = 15 + 35 * cycle
            moment = load * radius / 180.0 * 100  # rated 180 t·m
            if excursion:
                moment = r.choice((r.uniform(90, 99.5), r.uniform(100, 108)))
            wind = max(0.0, 6 + 3 * math.sin(t / 600 + self.phase) + r.gauss(0, 1.2))
            if excursion and r.random() < 0.3:
                wind = r.uniform(14, 22)
            return [
                ("load_t", round(load, 2), "t"),
                ("moment_pct", round(moment, 1), "%"),
                ("height_m", round(42 + r.gauss(0, 0.05), 2), "m"),
                ("radius_m", round(radius, 2), "m"),
                ("slew_deg", round((t * 2 + self.phase * 360) % 360, 1), "deg"),
                ("wind_speed_ms", round(wind, 1), "m/s"),
                ("tilt_deg", round(abs(r.gauss(0.2, 0.05)) + (0.8 if excursion else 0), 2), "deg"),
            ]
        if k == "hoist":
            moving = math.sin(t / 40 + self.phase) > 0
            return [
                ("load_kg", round(max(0, r.gauss(1200, 300)) + (1400 if excursion else 0)), "kg"),
                ("speed_ms", round(r.uniform(0.5, 0.6) if moving else 0.0, 2), "m/s"),
                ("door_open", 0.0 if moving and not excursion else 1.0, ""),
            ]
        if k == "foundation_pit":
            out = []
            for p in (1, 2, 3):
                rate = max(0.0, r.gauss(0.6, 0.2)) + (2.8 if excursion else 0.0)
                key = f"p{p}_disp"
                self.state[key] = (
                    self.state.get(key, 5.0 * p)
                    + rate / 86400 * 60
                    + (r.uniform(8, 16) if excursion else 0.0)
                )
                out += [
                    (f"p{p}_displacement_mm", round(self.state[key], 2), "mm"),
                    (f"p{p}_rate_mm_day", round(rate, 2), "mm/d"),
                ]
            return out
        if k == "high_formwork":
            return [
                ("axial_force_kn", round(r.gauss(18, 1.5) * (1.6 if excursion else 1), 2), "kN"),
                ("settlement_mm", round(abs(r.gauss(2, 0.4)) + (9 if excursion else 0), 2), "mm"),
                ("tilt_deg", round(abs(r.gauss(0.1, 0.03)) + (0.9 if excursion else 0), 2), "deg"),
            ]
        if k == "dust":
            pm10 = max(5.0, 45 + 15 * math.sin(t / 1800 + self.phase) + r.gauss(0, 5))
            if excursion:
                pm10 = r.uniform(80, 160)
            return [("pm25", round(pm10 * 0.55, 1), "ug/m3"), ("pm10", round(pm10, 1), "ug/m3")]
        if k == "noise":
            db = r.gauss(62, 3) + (r.uniform(9, 15) if excursion else 0)
            return [("noise_dba", round(db, 1), "dB(A)")]
        raise ValueError(f"unknown simulated kind {k!r}")


def plan_devices(project: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(device id, kind) for ``n`` sensors of a project, kinds in rotation."""
    return [
        (
            f"{project}-{SENSOR_KINDS[i % len(SENSOR_KINDS)].replace('_', '')}-{i + 1:03d}",
            SENSOR_KINDS[i % len(SENSOR_KINDS)],
        )
        for i in range(n)
    ]


def gateway_id(project: str) -> str:
    return f"{project}-gw"


class SiteModel:
    """Generates the telemetry messages of one project's gateway, deterministic by seed."""

    def __init__(
        self,
        project: str,
        devices: int,
        *,
        seed: int = 0,
        excursion_rate: float = 0.02,
        silence_rate: float = 0.002,
        start: datetime | None = None,
    ) -> None:
        self.project = project
        self.gateway = gateway_id(project)
        rng = random.Random(seed)
        self.devices = [
            SimDevice(d, k, random.Random(rng.random()), phase=rng.random())
            for d, k in plan_devices(project, devices, seed)
        ]
        self.rng = rng
        self.excursion_rate = excursion_rate
        self.silence_rate = silence_rate
        self.start = start or datetime.now(UTC)
        self.seq = 0

    def tick(self, t: float) -> Iterator[Telemetry]:
        """One message per device that is not silent at ``t`` seconds since start."""
        ts = self.start + timedelta(seconds=t)
        for dev in self.devices:
            if t < dev.silent_until:
                continue
            if self.rng.random() < self.silence_rate:
                dev.silent_until = t + self.rng.uniform(60, 600)  # a device goes quiet a while
                continue
            excursion = self.rng.random() < self.excursion_rate
            readings = [
                Reading(metric=m, value=v, unit=u, source=dev.id)
                for m, v, u in dev.readings(t, excursion)
            ]
            self.seq += 1
            yield Telemetry(
                id=uuid.uuid4(),
                device=self.gateway,
                ts=ts,
                seq=self.seq,
                readings=readings[: limits.MAX_READINGS_PER_MESSAGE],
            )


@dataclass
class PublishResult:
    messages: int = 0
    readings: int = 0
    ids: list[uuid.UUID] = field(default_factory=list)
    seconds: float = 0.0
    rejected: int = 0  # refused by the broker (ACL): not delivered


class GatewayPublisher:
    """A gateway's MQTT connection: QoS 1, retained status + last will, bounded in flight."""

    # paho reuses message ids past 65535 and silently replaces a queued message whose id is
    # reused, so never get that far ahead of the broker.
    MAX_UNACKED = 10_000

    def __init__(self, endpoint: MqttEndpoint, prefix: str, project: str, gateway: str) -> None:
        self.prefix, self.project, self.gateway = prefix, project, gateway
        self.client = make_client(endpoint, f"smartsite-sim-{gateway}", persistent=False)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)  # queue while the broker is away
        self.endpoint = endpoint
        self.seq = 0
        self.rejected = 0  # PUBACKs with a failure reason, e.g. 0x87 not authorized
        self._unacked = 0
        self._refused: str | None = None
        self._connected = threading.Event()
        self._lock = threading.Condition()
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        # seq 0: the broker publishes the will at a time of its choosing, outside the sequence.
        will = Status(device=gateway, seq=0, state=State.OFFLINE, detail={"reason": "last will"})
        self.client.will_set(self.topic(Kind.STATUS), encode(will), qos=1, retain=True)

    def topic(self, kind: Kind) -> str:
        return build(self.prefix, self.project, self.gateway, kind)

    def _status(self, state: State) -> Status:
        self.seq += 1
        return Status(device=self.gateway, seq=self.seq, state=state)

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
            client.disconnect()  # a refused login does not get better by retrying
        self._connected.set()

    def _on_publish(
        self, _c: mqtt.Client, _u: object, _mid: int, reason: object, _p: object
    ) -> None:
        with self._lock:
            self._unacked -= 1
            if getattr(reason, "is_failure", False):
                self.rejected += 1
            self._lock.notify_all()

    def connect(self, timeout: float = 30.0) -> None:
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError(
                f"no answer from the broker at {self.endpoint.host}:"
                f"{self.endpoint.port} after {timeout}s"
            )
        if self._refused:
            self.client.loop_stop()
            raise ConnectionRefusedError(
                f"the broker refused gateway {self.gateway!r}: {self._refused}"
            )
        self.publish(Kind.STATUS, encode(self._status(State.ONLINE)), retain=True)

    def publish(self, kind: Kind, payload: bytes, retain: bool = False) -> None:
        with self._lock:
            while self._unacked >= self.MAX_UNACKED:
                self._lock.wait(0.5)
            self._unacked += 1
        self.client.publish(self.topic(kind), payload, qos=1, retain=retain)

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until the broker has acknowledged everything published."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unacked > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._unacked} messages unacknowledged after {timeout}s")
                self._lock.wait(min(left, 0.5))

    def close(self) -> None:
        self.publish(Kind.STATUS, encode(self._status(State.OFFLINE)), retain=True)
        self.drain()
        self.client.disconnect()
        self.client.loop_stop()


def run(
    endpoint: MqttEndpoint,
    prefix: str,
    project: str,
    devices: int,
    rate: float,
    seconds: float,
    *,
    seed: int = 0,
    realtime: bool = True,
    silence_rate: float = 0.002,
    on_progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Publish ``seconds`` of telemetry at ``rate`` messages/s per device.

    ``realtime=False`` publishes the same simulated time span as fast as the broker takes it.
    """
    model = SiteModel(project, devices, seed=seed, silence_rate=silence_rate)
    pub = GatewayPublisher(endpoint, prefix, project, model.gateway)
    pub.connect()
    model.seq = pub.seq
    result = PublishResult()
    started = time.monotonic()
    for tick in range(round(seconds * rate)):
        t = tick / rate
        if realtime:
            delay = started + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for msg in model.tick(t):
            pub.publish(Kind.TELEMETRY, encode(msg))
            result.messages += 1
            result.readings += len(msg.readings)
            result.ids.append(msg.id)
        if on_progress:
            on_progress(result.messages)
    pub.seq = model.seq
    pub.drain()
    pub.close()
    result.rejected = pub.rejected
    result.seconds = time.monotonic() - started
    return result


def register_site(
    database_url: str, project: str, devices: int, *, district: str = "110105", permit: bool = True
) -> None:
    """Register the simulated project, its gateway and sensors, and (unless ``permit`` is
    False) a valid construction permit (idempotent)."""
    from smartsite.db import connect
    from smartsite.db.registry import (
        DeviceIn,
        PermitIn,
        ProjectIn,
        upsert_device,
        upsert_district,
        upsert_permit,
        upsert_project,
    )

    rated = {"tower_crane": {"moment_tm": 180.0}, "foundation_pit": {"depth_m": 12.0}}
    with connect(database_url) as conn:
        upsert_district(conn, district, "朝阳区")
        upsert_project(
            conn,
            ProjectIn(
                id=project,
                name=f"Simulated site {project}",
                district_code=district,
                latitude=39.92,
                longitude=116.45,
            ),
        )
        # a valid construction permit: otherwise every alert of the site is "unpermitted work"
        today = date.today()
        if permit:
            upsert_permit(
                conn,
                PermitIn(
                    number=f"SIM-{project}",
                    project_id=project,
                    issued_on=today - timedelta(days=90),
                    expires_on=today + timedelta(days=365),
                ),
            )
        upsert_device(
            conn,
            DeviceIn(
                id=gateway_id(project), project_id=project, kind="gateway", name="site gateway"
            ),
        )
        for dev, kind in plan_devices(project, devices):
            upsert_device(
                conn,
                DeviceIn(
                    id=dev,
                    project_id=project,
                    kind=kind,  # type: ignore[arg-type]
                    gateway_id=gateway_id(project),
                    rated=rated.get(kind, {}),
                ),
            )
