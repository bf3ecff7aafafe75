"""One camera's pipeline: detect -> track -> recognise -> judge -> protocol messages.

``CameraPipeline.process(frame, ts)`` returns :class:`Emission` s: protocol messages ready for
the outbox, each with its evidence JPEG where it has one, in the order of the outbox's lanes
(alerts and attendance, then track events). The pipeline decides neither the lane nor the
sequence number: the agent puts each emission in the lane of its kind
(:func:`edge.outbox.priority_of`, the one priority scheme) and the outbox stamps the
per-device ``seq`` when it commits the message (messages leave here with ``seq`` 0).
``apply`` takes a new camera config (zones and rule settings the hub pushed)
or a new face gallery without a restart; track state carries over.

Thread pools: OpenCV's (``cv2.setNumThreads``) and onnxruntime's intra-op pool are set from the
gateway's ``threads`` config, so on a 2-core gateway they do not fight (see ``edge/bench.py``
for the measured effect).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import supervision as sv

from edge.config import CameraConfig, ThreadsConfig
from edge.detector import Detector
from edge.evidence import annotate, encode_jpeg, new_evidence_id
from edge.judge import ATTENDANCE, FaceObs, Judge, Verdict
from edge.outbox import priority_of
from edge.tracking import PersonTracker, TrackBook, TrackChange, to_sv, tracked_object
from smartsite.protocol.messages import (
    Attendance,
    Attributes,
    EdgeAlert,
    Event,
    EventType,
    FaceMatch,
    Rule,
)
from smartsite.protocol.topics import Kind

FACE_MIN_PX = 20  # faces narrower than this are not worth an embedding
Message = EdgeAlert | Event | Attendance
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Emission:
    """One message for the outbox, with its evidence JPEG (``evidence/{evidence_id}``).

    The agent commits the evidence and its message in one outbox transaction, the evidence
    first and in the message's lane, so the photo is sent before the alert (ingest links them
    by ``evidence_id`` and stores either without the other)."""

    kind: Kind
    message: Message
    evidence: bytes | None = None
    evidence_id: str | None = None

    @property
    def lane(self) -> int:
        """The outbox lane (0 most urgent): the kind's, see :func:`edge.outbox.priority_of`."""
        return priority_of(self.kind)


def _ts(ts: float | datetime) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def set_threads(threads: ThreadsConfig) -> None:
    """OpenCV's pool (process-wide); onnxruntime's is per session (see :class:`Detector`)."""
    cv2.setNumThreads(threads.opencv)


class CameraPipeline:
    """Detection, tracking, faces and rules of one camera."""

    def __init__(
        self,
        camera: CameraConfig,
        detector: Detector,
        *,
        device: str,
        faces: object | None = None,  # edge.faces.FaceModels
        gallery: object | None = None,  # edge.faces.Gallery
        roles: Mapping[str, str] | None = None,
        threads: ThreadsConfig | None = None,
        face_every: int = 2,
        events: bool = True,
        lost_s: float = 2.0,
    ) -> None:
        set_threads(threads or ThreadsConfig())
        self.device = device
        self.detector = detector
        self.faces = faces
        self.face_every = max(1, face_every)
        self.events = events
        self.frames = 0
        self.camera = camera
        self.gallery = gallery
        self.judge = Judge(
            camera.rules, camera.zones, roles=roles or {}, gallery_size=self._gallery_size()
        )
        self.tracker = PersonTracker(
            fps=camera.fps,
            lost_s=lost_s,
            min_score=camera.rules.min_score,
            ppe_score=camera.rules.ppe_score,
        )
        self.book = TrackBook(end_after_s=lost_s)
        self._det_conf = min(camera.rules.min_score, camera.rules.ppe_score)
        self._last_ts = 0.0
        # the agent applies hub pushes from the MQTT thread while the camera thread processes
        self._lock = threading.Lock()

    @classmethod
    def from_paths(
        cls,
        camera: CameraConfig,
        detector_path: str | Path,
        *,
        device: str,
        threads: ThreadsConfig | None = None,
        **kw: object,
    ) -> CameraPipeline:
        """With a detector session of ``threads.onnx_intra_op`` threads."""
        threads = threads or ThreadsConfig()
        set_threads(threads)
        det = Detector(detector_path, threads.onnx_intra_op)
        return cls(camera, det, device=device, threads=threads, **kw)  # type: ignore[arg-type]

    def _gallery_size(self) -> int:
        return len(self.gallery) if self.gallery is not None else 0  # type: ignore[arg-type]

    def apply(
        self,
        camera: CameraConfig | None = None,
        *,
        gallery: object | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> None:
        """Take new zones / rule settings (``camera``), a new gallery or worker roles."""
        with self._lock:
            self._apply(camera, gallery, roles)

    def _apply(
        self,
        camera: CameraConfig | None,
        gallery: object | None,
        roles: Mapping[str, str] | None,
    ) -> None:
        if camera is not None:
            self.camera = camera
            self._det_conf = min(camera.rules.min_score, camera.rules.ppe_score)
            self.tracker.min_score = camera.rules.min_score
            self.tracker.ppe_score = camera.rules.ppe_score
        if gallery is not None:
            self.gallery = gallery
        self.judge.configure(
            self.camera.rules,
            self.camera.zones,
            roles=roles,
            gallery_size=self._gallery_size(),
        )

    # --- the frame ----------------------------------------------------------------------------

    def detect(self, frame: Image) -> sv.Detections:
        return to_sv(self.detector.detect(frame, conf=self._det_conf), self.detector.names)

    def process(self, frame: Image, ts: float | datetime) -> list[Emission]:
        """Everything one frame gives: alerts, attendance, track events (lane order)."""
        with self._lock:
            return self._process(frame, ts)

    def _process(self, frame: Image, ts: float | datetime) -> list[Emission]:
        t = _ts(ts)
        self._last_ts = t
        self.frames += 1
        h, w = frame.shape[:2]
        size = (w, h)
        tracked = self.tracker.update(self.detect(frame), size)
        persons, ppe = tracked.persons, tracked.ppe
        face_obs = self._faces(frame, persons)
        verdicts = self.judge.update(t, size, persons, face_obs)
        out: list[Emission] = []
        changes = self.book.observe(t, frame, persons, self._objects(persons, size))
        for v in verdicts:
            out.append(self._emit_verdict(v, frame, persons, ppe))
        for c in changes:
            if c.type is EventType.END:
                self.judge.forget(c.track.track_id)
            if self.events:
                out.append(self._emit_event(c))
        out.sort(key=lambda e: e.lane)
        return out

    def close(self, ts: float | datetime | None = None) -> list[Emission]:
        """End every open track (the source stopped)."""
        with self._lock:
            return self._close(ts)

    def _close(self, ts: float | datetime | None) -> list[Emission]:
        t = self._last_ts if ts is None else _ts(ts)
        out = []
        for c in self.book.end_all(t):
            self.judge.forget(c.track.track_id)
            if self.events:
                out.append(self._emit_event(c))
        return out

    # --- faces --------------------------------------------------------------------------------

    def _faces(self, frame: Image, persons: sv.Detections) -> dict[int, FaceObs]:
        if (
            self.faces is None
            or self._gallery_size() == 0
            or len(persons) == 0
            or self.frames % self.face_every
        ):
            return {}
        ids = [int(t) for t in persons.tracker_id]
        if not any(self.judge.needs_face(t) for t in ids):
            return {}
        from edge.faces import match

        found = self.faces.detect(frame)  # type: ignore[attr-defined]
        out: dict[int, FaceObs] = {}
        boxes = persons.xyxy
        for f in found:
            x, y, fw, fh = f.box
            if fw < FACE_MIN_PX:
                continue
            cx, cy = x + fw / 2, y + fh / 2
            best, best_d = None, math.inf
            for i, tid in enumerate(ids):
                x1, y1, x2, y2 = boxes[i]
                ph = max(y2 - y1, 1.0)
                if x1 <= cx <= x2 and y1 - 0.1 * ph <= cy <= y1 + 0.45 * ph:
                    d = abs(cx - (x1 + x2) / 2) / ph + abs(cy - y1) / ph
                    if d < best_d:
                        best, best_d = tid, d
            if best is None or best in out or not self.judge.needs_face(best):
                continue
            emb = self.faces.embed(frame, f)  # type: ignore[attr-defined]
            m = match(emb, self.gallery, self.camera.rules.face_threshold)  # type: ignore[arg-type]
            out[best] = FaceObs(m.worker_id, m.similarity, f.area, f.score)
        return out

    # --- messages -----------------------------------------------------------------------------

    def _objects(self, persons: sv.Detections, size: tuple[int, int]) -> list:
        objs = []
        hh = persons.data.get("hard_hat")
        vv = persons.data.get("vest")
        fall_on = Rule.FALL in self.judge.enabled
        for i, tid in enumerate(persons.tracker_id if persons.tracker_id is not None else []):
            st = self.judge.tracks.get(int(tid))
            ident = st.identity if st else None
            attrs = Attributes(
                hard_hat=_bool(hh, i),
                vest=_bool(vv, i),
                lying=(st.lying if st else None) if fall_on else None,
                face=FaceMatch(worker_id=ident.worker_id, similarity=ident.similarity)
                if ident
                else None,
            )
            objs.append(
                tracked_object(
                    persons.xyxy[i],
                    float(persons.confidence[i]),
                    size,
                    st.zones if st else (),
                    attrs,
                )
            )
        return objs

    def _emit_verdict(
        self, v: Verdict, frame: Image, persons: sv.Detections, ppe: sv.Detections
    ) -> Emission:
        highlight = v.track_ids or ((v.track_id,) if v.track_id is not None else ())
        title = f"{v.rule} {v.severity.value if v.severity else ''}".strip()
        img = annotate(
            frame,
            zones=self.camera.zones,
            persons=persons,
            ppe=ppe,
            highlight=highlight,
            title=title,
            highlight_zone=v.zone_id,
        )
        evidence = encode_jpeg(img)
        evidence_id = new_evidence_id()
        st = self.book.tracks.get(v.track_id) if v.track_id is not None else None
        if v.rule == ATTENDANCE:
            msg: Message = Attendance(
                device=self.device,
                seq=0,  # stamped by the outbox
                ts=_dt(v.ts),
                worker_id=v.worker_id or "",
                similarity=float(np.clip(v.similarity or 0.0, -1, 1)),
                camera=self.camera.id,
                evidence_id=evidence_id,
            )
            return Emission(Kind.ATTENDANCE, msg, evidence, evidence_id)
        assert v.severity is not None and v.protocol_rule is not None
        msg = EdgeAlert(
            device=self.device,
            seq=0,
            ts=_dt(v.ts),
            rule=v.protocol_rule,
            severity=v.severity,
            camera=self.camera.id,
            event_id=st.event_id if st else None,
            zone=v.zone_id,
            evidence_id=evidence_id,
            detail=v.detail[:500],
        )
        return Emission(Kind.ALERT, msg, evidence, evidence_id)

    def _emit_event(self, c: TrackChange) -> Emission:
        evidence = evidence_id = None
        if c.type is EventType.END and c.track.snapshot is not None:
            evidence = encode_jpeg(c.track.snapshot.crop)
            evidence_id = new_evidence_id()
        msg = Event(
            device=self.device,
            seq=0,
            ts=_dt(c.ts),
            type=c.type,
            event_id=c.track.event_id,
            camera=self.camera.id,
            track_id=c.track.track_id,
            start_time=_dt(c.track.start_ts),
            end_time=_dt(c.ts) if c.type is EventType.END else None,
            before=c.before,
            after=c.after,
            evidence_id=evidence_id,
        )
        return Emission(Kind.EVENT, msg, evidence, evidence_id)


def _bool(values: np.ndarray | None, i: int) -> bool | None:
    if values is None:
        return None
    v = float(values[i])
    return None if math.isnan(v) else bool(v >= 0.5)
