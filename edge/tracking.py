"""People tracking (ByteTrack from supervision), PPE association and track events.

The detector finds people and PPE as separate boxes (person, head = a head without a hard
hat, hard_hat, vest, no_vest). Here:

* PPE boxes are given to people by geometry (:func:`associate`): a head or hard hat whose
  centre sits in the upper part of a person box (a little above its top allowed: a hard hat
  sticks out), a vest / no-vest whose centre sits in the torso band; among several people the
  one whose head point or torso point is nearest, relative to its height, wins.
* A head or hard hat that no person owns (crowds cut by the frame, people behind machinery:
  much of the real site data labels heads only) stands for a person of its own: a *proxy* box
  extended down from the head by typical body proportions (:func:`proxies`), flagged ``proxy``
  so the fall rule ignores it.
* :class:`PersonTracker` runs ByteTrack over real and proxy person boxes; the tracked
  ``sv.Detections`` carry ``data['hard_hat']`` / ``data['vest']`` (1 worn, 0 seen without,
  NaN not visible) and ``data['proxy']``: the input of :class:`edge.judge.Judge`.
* :class:`TrackBook` turns tracks into Frigate-style events: ``new`` when a track appears,
  ``update`` when its zones or attributes change (``before`` = the last published state),
  ``end`` when it has not been seen for ``end_after_s``, carrying the best snapshot (the
  largest, most confident view of the track).
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import supervision as sv

from edge.detector import Detections
from smartsite.protocol.messages import Attributes, EventType, TrackedObject

PERSON = "person"
HEAD = "head"  # a head without a hard hat
HARD_HAT = "hard_hat"
VEST = "vest"
NO_VEST = "no_vest"
HEAD_CLASSES = (HEAD, HARD_HAT)
TORSO_CLASSES = (VEST, NO_VEST)

# Where a head / a torso sits in a standing person's box (fractions of its height from the top).
HEAD_BAND = (-0.2, 0.4)
HEAD_POINT = 0.1
TORSO_BAND = (0.1, 0.8)
TORSO_POINT = 0.4
SIDE_SLACK = 0.1  # a head may stick out sideways by this share of the box width
# A proxy person from a head: body about 7 heads tall and 3 heads wide (clipped to the frame).
PROXY_HEIGHTS = 7.0
PROXY_WIDTHS = 3.0


def to_sv(det: Detections, names: Sequence[str]) -> sv.Detections:
    """The detector's output as ``sv.Detections`` with ``data['class_name']``."""
    cls = det.class_ids.astype(int)
    return sv.Detections(
        xyxy=det.boxes.astype(np.float32).reshape(-1, 4),
        confidence=det.scores.astype(np.float32),
        class_id=cls,
        data={"class_name": np.array([names[c] for c in cls], dtype=object).reshape(-1)},
    )


def _of(d: sv.Detections, *labels: str) -> sv.Detections:
    if len(d) == 0:
        return d
    return d[np.isin(d.data["class_name"], labels)]


def associate(persons: npt.NDArray[np.floating], ppe: sv.Detections) -> npt.NDArray[np.int64]:
    """Owner (index into ``persons`` boxes) of each PPE box, -1 when none fits."""
    owner = np.full(len(ppe), -1, dtype=np.int64)
    if len(ppe) == 0 or len(persons) == 0:
        return owner
    px1, py1, px2, py2 = (persons[:, k][None, :] for k in range(4))
    pw, ph = np.maximum(px2 - px1, 1.0), np.maximum(py2 - py1, 1.0)
    b = ppe.xyxy
    cx = ((b[:, 0] + b[:, 2]) / 2)[:, None]
    cy = ((b[:, 1] + b[:, 3]) / 2)[:, None]
    bw = (b[:, 2] - b[:, 0])[:, None]
    is_head = np.isin(ppe.data["class_name"], HEAD_CLASSES)[:, None]
    lo = np.where(is_head, HEAD_BAND[0], TORSO_BAND[0])
    hi = np.where(is_head, HEAD_BAND[1], TORSO_BAND[1])
    point = np.where(is_head, HEAD_POINT, TORSO_POINT)
    slack = np.where(is_head, SIDE_SLACK, 0.0) * pw
    rel_y = (cy - py1) / ph
    fits = (
        (cx >= px1 - slack)
        & (cx <= px2 + slack)
        & (rel_y >= lo)
        & (rel_y <= hi)
        & (bw <= pw * 1.2)  # a head or vest is not wider than the person
    )
    dist = np.hypot((cx - (px1 + px2) / 2) / ph, rel_y - point)
    dist = np.where(fits, dist, np.inf)
    best = dist.argmin(axis=1)
    ok = np.isfinite(dist[np.arange(len(ppe)), best])
    owner[ok] = best[ok]
    return owner


def proxies(heads: sv.Detections, size: tuple[int, int]) -> sv.Detections:
    """Person boxes estimated from heads nobody owns (one per place: a head and a hard hat
    on the same spot are one person)."""
    if len(heads) == 0:
        return sv.Detections.empty()
    w, h = size
    order = np.argsort(-heads.confidence)
    kept: list[int] = []
    for i in order:
        if all(_iou(heads.xyxy[i], heads.xyxy[j]) < 0.5 for j in kept):
            kept.append(int(i))
    hb = heads.xyxy[kept]
    hw, hh = hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1]
    cx = (hb[:, 0] + hb[:, 2]) / 2
    boxes = np.stack(
        [
            np.clip(cx - hw * PROXY_WIDTHS / 2, 0, w),
            np.clip(hb[:, 1] - 0.1 * hh, 0, h),
            np.clip(cx + hw * PROXY_WIDTHS / 2, 0, w),
            np.clip(hb[:, 1] + hh * PROXY_HEIGHTS, 0, h),
        ],
        axis=1,
    ).astype(np.float32)
    return sv.Detections(
        xyxy=boxes,
        confidence=heads.confidence[kept].astype(np.float32),
        class_id=np.zeros(len(kept), dtype=int),
        data={"class_name": np.array([PERSON] * len(kept), dtype=object)},
    )


def _iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _worn(
    ppe: sv.Detections, owner: npt.NDArray[np.int64], n: int, worn: str, missing: str, th: float
) -> npt.NDArray[np.float32]:
    """Per person 1 (``worn`` box), 0 (``missing`` box) or NaN (neither), best score wins."""
    best_worn = np.zeros(n, np.float32)
    best_missing = np.zeros(n, np.float32)
    names = ppe.data["class_name"] if len(ppe) else np.zeros(0, dtype=object)
    for j in np.nonzero(owner >= 0)[0]:
        i, s = owner[j], float(ppe.confidence[j])
        if names[j] == worn and s >= th:
            best_worn[i] = max(best_worn[i], s)
        elif names[j] == missing:
            best_missing[i] = max(best_missing[i], s)
    out = np.full(n, np.nan, np.float32)
    out[best_missing > 0] = 0.0
    out[(best_worn > 0) & (best_worn >= best_missing)] = 1.0
    return out


@dataclass(frozen=True)
class Frame:
    """One frame's people, tracked, and the PPE boxes with their owners (tracker ids)."""

    persons: sv.Detections  # tracker_id, data: hard_hat, vest, proxy
    ppe: sv.Detections  # data: class_name, owner (tracker id or -1)


class PersonTracker:
    """ByteTrack over people (detected and proxy), PPE attached to each tracked person."""

    def __init__(
        self,
        *,
        fps: float = 5.0,
        lost_s: float = 2.0,
        min_score: float = 0.4,
        ppe_score: float = 0.35,
    ) -> None:
        self.min_score, self.ppe_score = min_score, ppe_score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated, kept until 0.31
            self._bt = sv.ByteTrack(
                track_activation_threshold=min_score,
                lost_track_buffer=max(1, math.ceil(lost_s * fps)),
                minimum_matching_threshold=0.8,
                frame_rate=30,  # the buffer above is already in frames at our rate
            )

    def reset(self) -> None:
        self._bt.reset()

    def update(self, det: sv.Detections, size: tuple[int, int]) -> Frame:
        """Track the people of one frame (``det``: every class; ``size`` = width, height)."""
        people = _of(det, PERSON)
        # A person box too unsure to start a track must not claim a head either: the head,
        # surer than its body (crowds, occlusion), then stands for a person of its own.
        people = people[people.confidence >= self.min_score]
        ppe = _of(det, *HEAD_CLASSES, *TORSO_CLASSES)
        if len(ppe) == 0:
            ppe = sv.Detections.empty()
            ppe.data["class_name"] = np.zeros(0, dtype=object)
        owner = associate(people.xyxy, ppe) if len(people) else np.full(len(ppe), -1)
        loose = np.nonzero((owner < 0) & np.isin(ppe.data["class_name"], HEAD_CLASSES))[0]
        loose = loose[ppe.confidence[loose] >= min(self.min_score, self.ppe_score)]
        extra = proxies(ppe[loose], size) if len(loose) else sv.Detections.empty()
        n_real = len(people)
        if len(extra):
            extra.data["class_name"] = np.array([PERSON] * len(extra), dtype=object)
            people = sv.Detections.merge([people, extra]) if n_real else extra
        people.data["proxy"] = np.arange(len(people)) >= n_real
        people.data["row"] = np.arange(len(people))
        if len(people) and n_real < len(people):
            owner = associate(people.xyxy, ppe)  # proxies claim their heads
        people.data["hard_hat"] = _worn(ppe, owner, len(people), HARD_HAT, HEAD, self.ppe_score)
        people.data["vest"] = _worn(ppe, owner, len(people), VEST, NO_VEST, self.ppe_score)
        if len(people) == 0:
            people = sv.Detections.empty()
            for key in ("proxy", "row", "hard_hat", "vest"):
                people.data[key] = np.zeros(0)
        tracked = self._bt.update_with_detections(people)
        if tracked.tracker_id is None:
            tracked.tracker_id = np.zeros(0, dtype=int)
        row_to_tid = {
            int(r): int(t)
            for r, t in zip(tracked.data.get("row", []), tracked.tracker_id, strict=True)
        }
        ppe.data["owner"] = np.array([row_to_tid.get(int(o), -1) for o in owner], dtype=int)
        return Frame(tracked, ppe)


# --- events ------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The best view of a track so far: a crop of the frame around its box."""

    score: float  # box area (share of the frame) x confidence
    crop: npt.NDArray[np.uint8]
    ts: float


@dataclass
class TrackState:
    track_id: int
    event_id: uuid.UUID
    start_ts: float
    last_ts: float
    last: TrackedObject
    published: TrackedObject | None = None
    published_ts: float = -math.inf
    snapshot: Snapshot | None = None
    attrs: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackChange:
    """A track event to publish (``before`` = the state at the previous event)."""

    type: EventType
    track: TrackState
    before: TrackedObject | None
    after: TrackedObject
    ts: float


SNAPSHOT_MAX_SIDE = 480


class TrackBook:
    """Track lifecycle events: new / update (zones or attributes changed) / end."""

    def __init__(self, *, end_after_s: float = 2.0, min_update_s: float = 1.0) -> None:
        self.end_after_s = end_after_s
        self.min_update_s = min_update_s
        self.tracks: dict[int, TrackState] = {}

    def observe(
        self,
        ts: float,
        frame: npt.NDArray[np.uint8],
        persons: sv.Detections,
        objects: Sequence[TrackedObject],
    ) -> list[TrackChange]:
        """Record this frame's tracked people (``objects`` in the order of ``persons``)."""
        out: list[TrackChange] = []
        h, w = frame.shape[:2]
        ids = persons.tracker_id if persons.tracker_id is not None else []
        for i, (tid_raw, obj) in enumerate(zip(ids, objects, strict=True)):
            tid = int(tid_raw)
            st = self.tracks.get(tid)
            if st is None:
                st = self.tracks[tid] = TrackState(tid, uuid.uuid4(), ts, ts, obj)
            st.last_ts, st.last = ts, obj
            x1, y1, x2, y2 = persons.xyxy[i]
            score = (x2 - x1) * (y2 - y1) / float(w * h) * float(persons.confidence[i])
            if st.snapshot is None or score > st.snapshot.score * 1.1:
                st.snapshot = Snapshot(score, _crop(frame, persons.xyxy[i]), ts)
            if st.published is None:
                out.append(self._publish(st, EventType.NEW, ts))
            elif _changed(st.published, obj) and ts - st.published_ts >= self.min_update_s:
                out.append(self._publish(st, EventType.UPDATE, ts))
        for tid in [t for t, st in self.tracks.items() if ts - st.last_ts > self.end_after_s]:
            out.append(self.end(tid, ts))
        return out

    def _publish(self, st: TrackState, kind: EventType, ts: float) -> TrackChange:
        change = TrackChange(kind, st, st.published, st.last, ts)
        st.published, st.published_ts = st.last, ts
        return change

    def end(self, track_id: int, ts: float) -> TrackChange:
        st = self.tracks.pop(track_id)
        return TrackChange(EventType.END, st, st.published, st.last, ts)

    def end_all(self, ts: float) -> list[TrackChange]:
        return [self.end(tid, ts) for tid in list(self.tracks)]


def _changed(a: TrackedObject, b: TrackedObject) -> bool:
    return a.zones != b.zones or a.attributes != b.attributes or a.label != b.label


def _crop(frame: npt.NDArray[np.uint8], box: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    import cv2

    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * 0.1, (y2 - y1) * 0.1
    xa, ya = int(max(0, x1 - mx)), int(max(0, y1 - my))
    xb, yb = int(min(w, x2 + mx)), int(min(h, y2 + my))
    crop = frame[ya:yb, xa:xb]
    if crop.size == 0:
        crop = frame
    side = max(crop.shape[:2])
    if side > SNAPSHOT_MAX_SIDE:
        r = SNAPSHOT_MAX_SIDE / side
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * r)), max(1, int(crop.shape[0] * r))))
    return np.ascontiguousarray(crop).copy()


def tracked_object(
    box: npt.NDArray[np.floating],
    score: float,
    size: tuple[int, int],
    zones: Sequence[str],
    attributes: Attributes,
    label: str = PERSON,
) -> TrackedObject:
    """A protocol ``TrackedObject`` (box normalised to the frame)."""
    w, h = size
    nb = np.clip(np.asarray(box, float) / [w, h, w, h], 0.0, 1.0)
    return TrackedObject(
        label=label,
        score=float(np.clip(score, 0.0, 1.0)),
        box=(float(nb[0]), float(nb[1]), float(nb[2]), float(nb[3])),
        zones=list(zones),
        attributes=attributes,
    )
