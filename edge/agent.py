"""The edge agent of one site gateway: cameras and sensors in, MQTT out through the outbox.

Threads: one MQTT network loop (paho), one outbox publisher, one per sensor, two per camera
(reader and worker, see :mod:`edge.sources`), one for gateway health. Everything the agent
produces goes through the disk outbox (:mod:`edge.outbox`) — telemetry, events, alerts,
attendance, evidence and the retained ``online`` status — so the per-device sequence stays
contiguous across restarts and nothing is lost while the uplink is down. The offline status
is the connection's MQTT last will (seq 0, retained).

One priority scheme: the outbox lane of a message follows from its kind
(:func:`edge.outbox.priority_of`); evidence goes in the lane of the message it belongs to and is
committed before it in the same transaction, so the photo goes out before the alert that
names it. The hub needs no order: ingest stores evidence under (device, evidence id) and the
alert with its ``evidence_id``, each without waiting for the other (with several ingest
workers on a shared subscription they may land in either order). The per-device ``seq`` is
stamped by the outbox only.

The hub's retained ``config`` message (zones, thresholds, gallery version, model versions) is
applied as it arrives, without a restart: every camera's pipeline gets its new camera config.
The enrolled-face gallery comes on the device's retained ``gallery`` topic
(:class:`smartsite.protocol.messages.FaceGallery`); it is loaded into every pipeline as it
arrives and kept in memory only (biometric data is not written to the gateway's disk: the
broker hands the retained gallery over again after a restart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import paho.mqtt.client as mqtt

from edge.config import CameraConfig, ConfigError, EdgeConfig, apply_hub_config
from edge.outbox import Outbox, OutboxPublisher, priority_of
from edge.sensors import SensorRunner, build_adapter
from edge.sources import Camera, Cameras, CameraState
from smartsite.mqtt import make_client
from smartsite.protocol import limits
from smartsite.protocol.messages import Config as HubConfig
from smartsite.protocol.messages import (
    FaceGallery,
    Reading,
    State,
    Status,
    Telemetry,
    encode,
)
from smartsite.protocol.topics import Kind, build

log = logging.getLogger(__name__)

VERSION = "smartsite-edge/0.1"


class Pipeline(Protocol):
    """What a camera's frames go to (``edge.pipeline.CameraPipeline``)."""

    def process(self, frame: np.ndarray, ts: datetime) -> list[Any]: ...

    def apply(
        self,
        camera: CameraConfig | None = None,
        *,
        gallery: Any = None,
        roles: Mapping[str, str] | None = None,
    ) -> None: ...


PipelineFactory = Callable[[CameraConfig, EdgeConfig], Pipeline]


class FrameCounter:
    """A pipeline that only counts frames (``--no-detect``, tests, source checks)."""

    def __init__(self, camera: CameraConfig, _config: EdgeConfig | None = None) -> None:
        self.camera = camera
        self.frames = 0
        self.last_shape: tuple[int, ...] | None = None
        self.applied = 0
        self.gallery: Any = None

    def process(self, frame: np.ndarray, ts: datetime) -> list[Any]:
        self.frames += 1
        self.last_shape = frame.shape
        return []

    def apply(
        self,
        camera: CameraConfig | None = None,
        *,
        gallery: Any = None,
        roles: Mapping[str, str] | None = None,
    ) -> None:
        if camera is not None:
            self.camera = camera
        if gallery is not None:
            self.gallery = gallery
        self.applied += 1


class SharedFaces:
    """One set of face models for every camera: YuNet's detector object keeps per-call input
    state, so the camera threads take turns (a lock) instead of loading the models per camera."""

    def __init__(self, models: Any) -> None:
        self._models = models
        self._lock = threading.Lock()
        self.recognizer_sha256: str = models.recognizer_sha256

    def detect(self, image: np.ndarray) -> list[Any]:
        with self._lock:
            return self._models.detect(image)  # type: ignore[no-any-return]

    def embed(self, image: np.ndarray, face: Any) -> np.ndarray:
        with self._lock:
            return self._models.embed(image, face)  # type: ignore[no-any-return]


def detector_path(config: EdgeConfig) -> str:
    """The detector's ONNX file: a path in the config, or a registry name (sha256-checked)."""
    name = config.models.detector
    if name.endswith(".onnx"):
        return name
    from models.registry import model_path
    from smartsite.settings import Settings

    models_dir = config.models.models_dir or Settings().models_path
    return str(model_path(name, models_dir))


def detection_pipelines(config: EdgeConfig) -> PipelineFactory:
    """A factory of ``edge.pipeline.CameraPipeline`` sharing one detector file; raises a
    clear error when the pipeline code or a model is missing."""
    try:
        from edge.pipeline import CameraPipeline
    except ImportError as e:
        raise ConfigError(f"the detection pipeline is not available ({e}); use --no-detect") from e
    path = detector_path(config)
    faces = None
    if config.models.faces:
        from edge.faces import FaceModels
        from smartsite.settings import Settings

        models_dir = config.models.models_dir or Settings().models_path
        faces = SharedFaces(FaceModels(models_dir, threads=config.gateway.threads.onnx_intra_op))

    def make(camera: CameraConfig, cfg: EdgeConfig) -> Pipeline:
        return CameraPipeline.from_paths(  # type: ignore[return-value]
            camera,
            path,
            device=cfg.gateway.device,
            threads=cfg.gateway.threads,
            faces=faces,
        )

    return make


class Agent:
    """Runs one gateway config until :meth:`stop`."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        pipelines: PipelineFactory | None = None,
        environ: dict[str, str] | None = None,
        realtime: bool = True,
    ) -> None:
        self.config = config
        gw = config.gateway
        self.device, self.project, self.prefix = gw.device, gw.project, gw.topic_prefix
        self.endpoint = gw.mqtt.endpoint(gw.device, environ)
        self.pipeline_factory: PipelineFactory = pipelines or FrameCounter
        self.realtime = realtime
        self.pipelines: dict[str, Pipeline] = {}
        self.cameras = Cameras()
        self.sensors: list[SensorRunner] = []
        self.outbox: Outbox | None = None
        self.publisher: OutboxPublisher | None = None
        self.connected = threading.Event()
        self.config_applied = threading.Event()  # set whenever a hub push was applied
        self.config_error = ""
        self.gallery: Any = None  # edge.faces.Gallery once the hub sent one
        self.gallery_version: str | None = None
        self.gallery_loaded = threading.Event()  # set whenever a gallery was loaded
        self.gallery_error = ""
        self._stop = threading.Event()
        self._health: threading.Thread | None = None
        self._status_dirty = threading.Event()
        self._config_lock = threading.Lock()
        self.client = make_client(self.endpoint, f"smartsite-edge-{gw.device}", persistent=False)

    # --- topics and submitting ---------------------------------------------------------------

    def topic(self, kind: Kind, evidence_id: str | None = None) -> str:
        return build(self.prefix, self.project, self.device, kind, evidence_id)

    def submit(
        self,
        kind: Kind,
        message: Any,
        *,
        evidence: bytes | None = None,
        evidence_id: str | None = None,
        retain: bool = False,
    ) -> int:
        """Commit a message (and its evidence JPEG, first, in the message's lane) to the
        outbox in one transaction; the lane follows from ``kind``."""
        assert self.outbox is not None, "start() the agent first"
        lane = priority_of(kind)
        items: list[tuple[str, Any, int, str | None, bool]] = []
        if evidence is not None and evidence_id is not None:
            if len(evidence) > limits.MAX_EVIDENCE_BYTES:
                log.warning("evidence %s is %d bytes: not sent", evidence_id, len(evidence))
            else:
                items.append(
                    (
                        self.topic(Kind.EVIDENCE, evidence_id),
                        evidence,
                        lane,
                        f"evidence:{evidence_id}",
                        False,
                    )
                )
        items.append((self.topic(kind), message, lane, None, retain))
        return self.outbox.put_many(items)

    def submit_readings(self, readings: list[Reading]) -> None:
        step = limits.MAX_READINGS_PER_MESSAGE
        for i in range(0, len(readings), step):
            msg = Telemetry(device=self.device, seq=0, readings=readings[i : i + step])
            self.submit(Kind.TELEMETRY, msg)

    def _emissions(self, emissions: list[Any]) -> None:
        for e in emissions:
            self.submit(e.kind, e.message, evidence=e.evidence, evidence_id=e.evidence_id)

    # --- MQTT -----------------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("the broker refused gateway %s: %s", self.device, reason)
            return
        log.info("connected to %s:%s", self.endpoint.host, self.endpoint.port)
        client.subscribe([(self.topic(Kind.CONFIG), 1), (self.topic(Kind.GALLERY), 1)])
        self.connected.set()
        self._status_dirty.set()  # announce online (through the outbox: in sequence)
        if self.publisher:
            self.publisher.set_connected(True)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object
    ) -> None:
        if self.connected.is_set():
            log.warning("disconnected from the broker (%s); the outbox keeps everything", reason)
        self.connected.clear()
        if self.publisher:
            self.publisher.set_connected(False)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topic(Kind.GALLERY):
            self._on_gallery(msg.payload)
            return
        if not msg.payload:
            return  # the hub cleared its retained config: keep running on the current one
        try:
            push = HubConfig.model_validate_json(msg.payload)
            self.apply(push)
        except Exception as e:  # a bad push must not take the agent down
            self.config_error = f"{type(e).__name__}: {e}"[:300]
            log.error("hub config on %s not applied: %s", msg.topic, self.config_error)
            self._status_dirty.set()

    def apply(self, push: HubConfig) -> bool:
        """Apply a hub push to the running agent; False when it was already applied."""
        with self._config_lock:
            if self.config.config_id == str(push.id):
                return False  # the retained message again, after a reconnect
            if self.config.config_ts and push.ts < self.config.config_ts:
                log.warning("hub config %s is older than the one applied: ignored", push.id)
                return False
            new = apply_hub_config(self.config, push)
            for cam in new.cameras:
                pipe = self.pipelines.get(cam.id)
                if pipe is not None:
                    pipe.apply(cam)
                running = self.cameras.cameras.get(cam.id)
                if running is not None:
                    running.config = cam
            self.config = new
            self.config_error = ""
        log.info(
            "hub config %s applied: %d zones, %d thresholds, gallery %s",
            push.id,
            sum(len(c.zones) for c in new.cameras),
            len(new.thresholds),
            new.models.gallery_version,
        )
        self.config_applied.set()
        self._status_dirty.set()
        return True

    def _on_gallery(self, payload: bytes) -> None:
        try:
            if len(payload) > limits.MAX_GALLERY_BYTES:
                raise ValueError(f"{len(payload)} bytes, limit {limits.MAX_GALLERY_BYTES}")
            gallery = FaceGallery.model_validate_json(payload) if payload else None
            self.load_gallery(gallery)
        except Exception as e:  # a bad gallery must not take the agent down
            self.gallery_error = f"{type(e).__name__}: {e}"[:300]
            log.error("face gallery not loaded: %s", self.gallery_error)
            self._status_dirty.set()

    def load_gallery(self, push: FaceGallery | None) -> None:
        """Load the hub's gallery into every camera's pipeline (None or no workers: unload,
        e.g. the hub cleared it: nobody is recognised, nobody is a stranger)."""
        from edge.faces import RECOGNIZER, Gallery

        if push is not None:
            if push.device != self.device or push.project != self.project:
                raise ConfigError(
                    f"gallery for {push.project}/{push.device} pushed to gateway "
                    f"{self.project}/{self.device}"
                )
            from models.registry import spec

            want = spec(RECOGNIZER).sha256
            if push.model_sha256 != want:
                raise ConfigError(
                    f"gallery {push.version[:12]} was made with recogniser {push.model_sha256[:12]}"
                    f", this gateway runs {want[:12]}: templates would not compare"
                )
        gallery = Gallery(push.workers if push is not None else {})
        roles = dict(push.roles) if push is not None else {}
        with self._config_lock:
            for pipe in self.pipelines.values():
                pipe.apply(gallery=gallery, roles=roles)
            self.gallery = gallery
            self.gallery_version = push.version if push is not None and len(gallery) else None
            self.gallery_error = ""
        log.info("face gallery %s loaded: %d workers", self.gallery_version, len(gallery))
        self.gallery_loaded.set()
        self._status_dirty.set()

    # --- status and health ------------------------------------------------------------------

    def status_detail(self) -> dict[str, str]:
        detail = {"version": VERSION}
        detail.update(self.cameras.status())
        for s in self.sensors:
            detail[f"sensor.{s.id}"] = s.status_text()
        if self.config.config_id:
            detail["config_id"] = self.config.config_id
        detail["zones"] = ",".join(z.id for c in self.config.cameras for z in c.zones)[:200]
        # The gallery loaded, not Config.gallery_version: the hub republishes the gallery
        # alone when enrolments change, leaving the retained config (and its version) as is.
        if self.gallery is not None:
            detail["gallery_loaded"] = (
                f"{self.gallery_version or 'none'} ({len(self.gallery)} workers)"
            )
        if self.gallery_error:
            detail["gallery_error"] = self.gallery_error
        if self.config_error:
            detail["config_error"] = self.config_error
        return detail

    def health_readings(self) -> list[Reading]:
        now = datetime.now(UTC)
        out: list[Reading] = []
        if self.outbox is not None:
            depth = self.outbox.depth()
            out += [
                Reading(metric="outbox_depth", value=depth.rows, unit="msg", time=now),
                Reading(metric="outbox_bytes", value=depth.bytes, unit="B", time=now),
                Reading(
                    metric="outbox_dropped", value=sum(depth.dropped.values()), unit="msg", time=now
                ),
            ]
        for cam in self.cameras.cameras.values():
            ok = 1.0 if cam.state is CameraState.OK else 0.0
            out += [
                Reading(metric="camera_ok", value=ok, unit="", time=now, source=cam.id),
                Reading(
                    metric="camera_frames",
                    value=cam.stats.frames_processed,
                    unit="frame",
                    time=now,
                    source=cam.id,
                ),
            ]
        return out

    def _camera_status(self, camera_id: str, state: CameraState, reason: str) -> None:
        self._status_dirty.set()

    def _health_loop(self) -> None:
        interval = self.config.gateway.status_interval_s
        next_health = time.monotonic() + interval
        while not self._stop.is_set():
            if self._status_dirty.is_set():
                self._status_dirty.clear()
                status = Status(
                    device=self.device, seq=0, state=State.ONLINE, detail=self.status_detail()
                )
                self.submit(Kind.STATUS, status, retain=True)
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + interval
                # One message for the gateway's own readings and one per camera: the hub
                # accepts a camera's readings only when the camera id is a registry device
                # behind this gateway (else that message is dead-lettered, naming the camera),
                # which must never cost the gateway's outbox health.
                by_source: dict[str | None, list[Reading]] = {}
                for r in self.health_readings():
                    by_source.setdefault(r.source, []).append(r)
                for readings in by_source.values():
                    self.submit_readings(readings)
            self._stop.wait(0.2)

    # --- cameras ------------------------------------------------------------------------------

    def _sink(self, camera_id: str) -> Callable[[np.ndarray, datetime], None]:
        def sink(frame: np.ndarray, ts: datetime) -> None:
            pipe = self.pipelines[camera_id]
            emissions = pipe.process(frame, ts)
            if emissions:
                self._emissions(emissions)

        return sink

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Agent:
        import cv2

        gw = self.config.gateway
        cv2.setNumThreads(gw.threads.opencv)
        self.outbox = Outbox(gw.outbox.path, gw.outbox.max_bytes, gw.outbox.synchronous)
        log.info("outbox %s: %d messages waiting from before", gw.outbox.path, len(self.outbox))
        client = self.client
        will = Status(
            device=self.device, seq=0, state=State.OFFLINE, detail={"reason": "last will"}
        )
        client.will_set(self.topic(Kind.STATUS), encode(will), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.max_inflight_messages_set(gw.mqtt.max_inflight)
        client.max_queued_messages_set(0)
        self.publisher = OutboxPublisher(self.outbox, client, window=gw.mqtt.max_inflight)
        self.publisher.start()
        # connect_async + loop_start: paho keeps trying while the broker is unreachable
        client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=gw.mqtt.keepalive_s)
        client.loop_start()
        for sc in self.config.sensors:
            if sc.enabled:
                runner = SensorRunner(build_adapter(sc, self.project), self.submit_readings)
                self.sensors.append(runner.start())
        for cc in self.config.cameras:
            if not cc.enabled:
                continue
            with self._config_lock:  # a hub push or gallery may arrive meanwhile
                cc = self.config.camera(cc.id)
                pipe = self.pipeline_factory(cc, self.config)
                if self.gallery is not None:
                    pipe.apply(gallery=self.gallery)
                self.pipelines[cc.id] = pipe
            cam = Camera(
                cc,
                self._sink(cc.id),
                on_status=self._camera_status,
                realtime=self.realtime,
                opencv_threads=gw.threads.opencv,
            )
            self.cameras.add(cam).start()
        self._status_dirty.set()
        self._health = threading.Thread(target=self._health_loop, name="edge-health", daemon=True)
        self._health.start()
        return self

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop sources, flush what the pipelines still hold, publish offline, close."""
        self._stop.set()
        self.cameras.stop()
        for pipe in self.pipelines.values():
            close = getattr(pipe, "close", None)
            if close is not None and self.outbox is not None:
                try:
                    self._emissions(close() or [])
                except Exception:
                    log.exception("closing a pipeline")
        for s in self.sensors:
            s.stop()
        if self._health:
            self._health.join(5)
        if self.outbox is not None and self.publisher is not None:
            offline = Status(
                device=self.device, seq=0, state=State.OFFLINE, detail={"reason": "stopped"}
            )
            self.submit(Kind.STATUS, offline, retain=True)
            if self.connected.is_set() and not self.publisher.wait_empty(drain_s):
                log.warning("%d messages stay in the outbox for the next start", len(self.outbox))
            self.publisher.stop()
        self.client.disconnect()
        self.client.loop_stop()
        if self.outbox is not None:
            self.outbox.close()

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass
