"""Unsafe-behaviour rules over tracked people: pure logic, no models.

Input per frame: the tracked people as one ``sv.Detections`` (``tracker_id`` set; ``data``
``hard_hat`` / ``vest`` as float 1 = worn, 0 = seen without, NaN = not visible, and ``proxy``
True for a person box estimated from a head alone) plus the face results per track. Output:
:class:`Verdict` s — what to publish.

How a rule decides (one person makes one alert, not one per frame):

* **k of n**: the condition must hold in ``k`` of the track's last ``n`` frames
  (``RuleSettings.k``/``n``); a frame where the evidence is not visible counts as "no".
* **cooldown** per track, rule and zone (``cooldown_s``); crowding per zone.
* **track switches**: when the tracker loses a person and gives them a new id, the new track
  inherits the alerts of a track that vanished at most ``SWITCH_WINDOW_S`` ago and whose last
  box it overlaps (IoU >= 0.3), so the same person is not reported twice.
* **faces** are a vote over the track's frames, each weighted by face area x detection score;
  identity is decided once ``FACE_MIN_FRAMES`` faces were seen and one label holds
  ``FACE_MIN_SHARE`` of the weight. Attendance then goes out once per track (enrolled worker);
  an unknown person is an alert, only while a gallery is loaded (nobody enrolled: nobody is a
  stranger).

Rules: no hard hat / no vest (required everywhere unless some zone of the camera requires that
PPE, then inside those zones only), zone intrusion (bottom-centre of the box in a danger or
restricted polygon; roles allowed in the zone are excepted once the face vote names the worker),
loitering (in a danger/restricted zone longer than its ``loiter_s``; published as zone
intrusion, the protocol has no separate rule), fall (box wider than ``lying_aspect`` x its
height, or its top dropping by ``FALL_DROP`` of its height within ``FALL_WINDOW_S`` and
staying low; proxy tracks and boxes cut by the frame edge are not judged), crowding (more
tracks in a zone than its ``crowd_limit``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from edge.config import RuleSettings, ZoneConfig
from smartsite.protocol.messages import Rule, Severity, ZoneType

FACE_MIN_FRAMES = 3
FACE_MIN_SHARE = 0.6
FALL_DROP = 0.4
FALL_WINDOW_S = 1.5
SWITCH_IOU = 0.3
SWITCH_WINDOW_S = 3.0  # a new id within this long of a vanished one can be the same person
EDGE_PX = 2.0  # a box within this of the top or bottom edge is cut by the frame

LOITERING = "loitering"  # internal rule key (published as zone_intrusion)
ATTENDANCE = "attendance"

SEVERITY: dict[str, Severity] = {
    Rule.NO_HARD_HAT: Severity.ALARM,
    Rule.NO_VEST: Severity.WARNING,
    Rule.FALL: Severity.ALARM,
    Rule.CROWDING: Severity.WARNING,
    Rule.UNKNOWN_PERSON: Severity.WARNING,
    LOITERING: Severity.ALARM,
}
INTRUSION_SEVERITY = {ZoneType.DANGER: Severity.ALARM, ZoneType.RESTRICTED: Severity.WARNING}


@dataclass(frozen=True)
class FaceObs:
    """One face seen on a track in one frame, matched against the gallery."""

    worker_id: str | None  # None: matches no enrolled worker
    similarity: float
    area: float  # face box area in pixels
    score: float  # face detection confidence


@dataclass(frozen=True)
class Verdict:
    """Something to publish: an alert (``severity`` set) or attendance."""

    rule: str  # a protocol Rule value, LOITERING or ATTENDANCE
    ts: float
    track_id: int | None
    severity: Severity | None
    detail: str
    zone_id: str | None = None
    box: tuple[float, float, float, float] | None = None  # pixels
    worker_id: str | None = None
    similarity: float | None = None
    track_ids: tuple[int, ...] = ()

    @property
    def protocol_rule(self) -> Rule | None:
        if self.rule == ATTENDANCE:
            return None
        return Rule.ZONE_INTRUSION if self.rule == LOITERING else Rule(self.rule)

    @property
    def is_alert(self) -> bool:
        return self.severity is not None


@dataclass(frozen=True)
class Identity:
    worker_id: str | None
    similarity: float
    share: float


@dataclass
class _Track:
    first_ts: float
    last_ts: float
    n: int
    votes: dict[str, deque[bool]] = field(default_factory=dict)
    boxes: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: deque(maxlen=64))
    zones: tuple[str, ...] = ()
    zone_since: dict[str, float] = field(default_factory=dict)
    zone_out: dict[str, int] = field(default_factory=dict)
    face_weight: dict[str | None, float] = field(default_factory=dict)
    face_sim: dict[str | None, float] = field(default_factory=dict)  # weighted sums
    face_frames: int = 0
    identity: Identity | None = None
    announced: bool = False
    drop_until: float = -math.inf
    drop_height: float = 0.0
    lying: bool = False
    box: np.ndarray | None = None
    proxy: bool = False

    def vote(self, key: str, cond: bool, k: int) -> bool:
        q = self.votes.get(key)
        if q is None:
            q = self.votes[key] = deque(maxlen=self.n)
        q.append(bool(cond))
        return sum(q) >= k


@dataclass
class _Fired:
    """A fired per-track alert, kept to recognise the same person under a new track id."""

    rule_key: str
    track_id: int
    box: np.ndarray
    fired_ts: float
    last_seen: float


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _flag(values: np.ndarray | None, i: int) -> bool | None:
    if values is None:
        return None
    v = float(values[i])
    return None if math.isnan(v) else v >= 0.5


class Judge:
    """Rules of one camera. ``update`` once per processed frame; state is per track."""

    def __init__(
        self,
        rules: RuleSettings | None = None,
        zones: Iterable[ZoneConfig] = (),
        *,
        roles: Mapping[str, str] | None = None,
        gallery_size: int = 0,
    ) -> None:
        self.tracks: dict[int, _Track] = {}
        self._fired: list[_Fired] = []
        self._zone_votes: dict[str, deque[bool]] = {}
        self._zone_fired: dict[str, float] = {}
        self._polys: dict[tuple[int, int], list[sv.PolygonZone]] = {}
        self._present: set[int] = set()
        self.configure(rules or RuleSettings(), zones, roles=roles, gallery_size=gallery_size)

    def configure(
        self,
        rules: RuleSettings,
        zones: Iterable[ZoneConfig],
        *,
        roles: Mapping[str, str] | None = None,
        gallery_size: int | None = None,
    ) -> None:
        """New rule settings, zones, worker roles or gallery size; track state is kept."""
        self.rules = rules
        self.zones = list(zones)
        self.enabled = set(rules.enabled)
        if roles is not None:
            self.roles = dict(roles)
        elif not hasattr(self, "roles"):
            self.roles = {}
        if gallery_size is not None:
            self.gallery_size = gallery_size
        self._polys.clear()
        for t in self.tracks.values():
            t.n = rules.n
        zone_ppe = {p for z in self.zones for p in z.required_ppe}
        self._ppe_everywhere = {"hard_hat", "vest"} - zone_ppe

    # --- geometry -------------------------------------------------------------------------

    def _zone_masks(self, persons: sv.Detections, size: tuple[int, int]) -> np.ndarray:
        """(n_persons, n_zones) bool: the bottom-centre of each box in each zone."""
        if not self.zones or len(persons) == 0:
            return np.zeros((len(persons), len(self.zones)), bool)
        w, h = size
        polys = self._polys.get(size)
        if polys is None:
            polys = []
            for z in self.zones:
                pts = np.round(np.asarray(z.polygon, float) * [w - 1, h - 1]).astype(np.int64)
                polys.append(sv.PolygonZone(pts, triggering_anchors=(sv.Position.BOTTOM_CENTER,)))
            self._polys[size] = polys
        # Boxes touching the bottom edge land their anchor one pixel outside the mask.
        clipped = persons[:]
        clipped.xyxy = persons.xyxy.copy()
        clipped.xyxy[:, 3] = np.minimum(clipped.xyxy[:, 3], h - 1)
        return np.stack([p.trigger(clipped) for p in polys], axis=1)

    # --- the frame ------------------------------------------------------------------------

    def update(
        self,
        ts: float,
        size: tuple[int, int],
        persons: sv.Detections,
        faces: Mapping[int, FaceObs] | None = None,
    ) -> list[Verdict]:
        """Judge one frame of tracked people (``size`` = width, height in pixels)."""
        faces = faces or {}
        r = self.rules
        out: list[Verdict] = []
        ids = persons.tracker_id if persons.tracker_id is not None else np.zeros(0, dtype=int)
        self._present = {int(t) for t in ids}
        inside = self._zone_masks(persons, size)
        hard_hat = persons.data.get("hard_hat")
        vest = persons.data.get("vest")
        proxy = persons.data.get("proxy")
        for fired in self._fired:
            if fired.track_id in self._present:
                i = int(np.nonzero(ids == fired.track_id)[0][0])
                fired.box = persons.xyxy[i].astype(float)
                fired.last_seen = ts
        self._fired = [f for f in self._fired if ts - f.fired_ts < r.cooldown_s]

        for i, tid_raw in enumerate(ids):
            tid = int(tid_raw)
            box = persons.xyxy[i].astype(float)
            t = self.tracks.get(tid)
            if t is None:
                t = self.tracks[tid] = _Track(first_ts=ts, last_ts=ts, n=r.n)
            t.last_ts = ts
            t.box = box
            t.proxy = bool(proxy[i]) if proxy is not None else False
            t.boxes.append((ts, box))
            t.zones = tuple(z.id for z, hit in zip(self.zones, inside[i], strict=True) if hit)
            zones_here = [z for z, hit in zip(self.zones, inside[i], strict=True) if hit]

            face = faces.get(tid)
            if face is not None:
                self._face_vote(t, face)

            # PPE
            for rule, flag in (
                (Rule.NO_HARD_HAT, _flag(hard_hat, i)),
                (Rule.NO_VEST, _flag(vest, i)),
            ):
                ppe = "hard_hat" if rule is Rule.NO_HARD_HAT else "vest"
                required = ppe in self._ppe_everywhere or any(
                    ppe in z.required_ppe for z in zones_here
                )
                cond = required and flag is False
                if rule in self.enabled and t.vote(rule, cond, r.k):
                    what = "hard hat" if ppe == "hard_hat" else "reflective vest"
                    where = next((z for z in zones_here if ppe in z.required_ppe), None)
                    detail = f"person #{tid} without a {what}" + (
                        f" in zone {where.id}" if where else ""
                    )
                    v = self._fire(ts, t, tid, rule, box, detail, zone=where.id if where else None)
                    if v:
                        out.append(v)

            # zones: intrusion and loitering
            for z in self.zones:
                if z.type is ZoneType.GATE:
                    continue
                hit = z.id in t.zones
                allowed = (
                    t.identity is not None
                    and t.identity.worker_id is not None
                    and self.roles.get(t.identity.worker_id) in set(z.allowed_roles)
                )
                key = f"{Rule.ZONE_INTRUSION}:{z.id}"
                if Rule.ZONE_INTRUSION in self.enabled and t.vote(key, hit and not allowed, r.k):
                    detail = f"person #{tid} inside {z.type.value} zone {z.name or z.id}"
                    v = self._fire(
                        ts,
                        t,
                        tid,
                        Rule.ZONE_INTRUSION,
                        box,
                        detail,
                        zone=z.id,
                        severity=INTRUSION_SEVERITY[z.type],
                    )
                    if v:
                        out.append(v)
                if hit:
                    t.zone_out[z.id] = 0
                    t.zone_since.setdefault(z.id, ts)
                else:
                    t.zone_out[z.id] = t.zone_out.get(z.id, 0) + 1
                    if t.zone_out[z.id] > r.n - r.k:  # left for good, not a missed frame
                        t.zone_since.pop(z.id, None)
                since = t.zone_since.get(z.id)
                if (
                    z.loiter_s is not None
                    and Rule.ZONE_INTRUSION in self.enabled
                    and since is not None
                    and hit
                    and ts - since > z.loiter_s
                    and not allowed
                ):
                    detail = (
                        f"person #{tid} loitering {ts - since:.0f} s in {z.type.value} zone "
                        f"{z.name or z.id} (limit {z.loiter_s:g} s)"
                    )
                    v = self._fire(ts, t, tid, LOITERING, box, detail, zone=z.id)
                    if v:
                        out.append(v)

            # fall
            if Rule.FALL in self.enabled:
                t.lying = self._lying(t, box, size)
                if t.vote(Rule.FALL, t.lying, r.k):
                    v = self._fire(ts, t, tid, Rule.FALL, box, f"person #{tid} fallen or lying")
                    if v:
                        out.append(v)

            # identity, once decided
            if t.identity is not None and not t.announced:
                t.announced = True
                ident = t.identity
                if ident.worker_id is not None:
                    out.append(
                        Verdict(
                            ATTENDANCE,
                            ts,
                            tid,
                            None,
                            f"worker {ident.worker_id} seen (track #{tid})",
                            box=tuple(box),
                            worker_id=ident.worker_id,
                            similarity=ident.similarity,
                        )
                    )
                elif self.gallery_size > 0 and Rule.UNKNOWN_PERSON in self.enabled:
                    v = self._fire(
                        ts,
                        t,
                        tid,
                        Rule.UNKNOWN_PERSON,
                        box,
                        f"person #{tid} matches no enrolled worker "
                        f"(best similarity {ident.similarity:.2f})",
                        similarity=ident.similarity,
                    )
                    if v:
                        out.append(v)

        # crowding, per zone
        if Rule.CROWDING in self.enabled:
            for j, z in enumerate(self.zones):
                if z.crowd_limit is None:
                    continue
                members = tuple(int(ids[i]) for i in np.nonzero(inside[:, j])[0])
                q = self._zone_votes.setdefault(z.id, deque(maxlen=r.n))
                q.append(len(members) > z.crowd_limit)
                last = self._zone_fired.get(z.id)
                if sum(q) >= r.k and (last is None or ts - last >= r.cooldown_s):
                    self._zone_fired[z.id] = ts
                    out.append(
                        Verdict(
                            Rule.CROWDING,
                            ts,
                            None,
                            SEVERITY[Rule.CROWDING],
                            f"{len(members)} people in zone {z.name or z.id} "
                            f"(limit {z.crowd_limit})",
                            zone_id=z.id,
                            track_ids=members,
                        )
                    )
        return out

    def _fire(
        self,
        ts: float,
        t: _Track,
        tid: int,
        rule: str,
        box: np.ndarray,
        detail: str,
        *,
        zone: str | None = None,
        severity: Severity | None = None,
        similarity: float | None = None,
    ) -> Verdict | None:
        key = f"{rule}:{zone}" if zone else str(rule)
        # Quiet while this track, or the same person under a new track id (a vanished track
        # whose last box this one overlaps), fired the same alert within the cooldown.
        for f in self._fired:
            if f.rule_key == key and (
                f.track_id == tid
                or (
                    f.track_id not in self._present
                    and ts - f.last_seen <= SWITCH_WINDOW_S
                    and _iou(f.box, box) >= SWITCH_IOU
                )
            ):
                f.track_id, f.box, f.last_seen = tid, box, ts
                return None
        self._fired.append(_Fired(key, tid, box, ts, ts))
        return Verdict(
            str(rule),
            ts,
            tid,
            severity or SEVERITY[rule],
            detail,
            zone_id=zone,
            box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            worker_id=t.identity.worker_id if t.identity else None,
            similarity=similarity,
        )

    def _lying(self, t: _Track, box: np.ndarray, size: tuple[int, int]) -> bool:
        if t.proxy:
            return False
        _, h_img = size
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        if h <= 0 or y1 <= EDGE_PX or y2 >= h_img - EDGE_PX:
            return False  # cut by the frame: its shape says nothing about the posture
        ts = t.boxes[-1][0]
        for t0, b0 in t.boxes:
            if ts - t0 > FALL_WINDOW_S or t0 == ts:
                continue
            h0 = b0[3] - b0[1]
            if h0 > 0 and y1 - b0[1] >= FALL_DROP * h0 and h <= (1 - FALL_DROP) * h0:
                t.drop_until = ts + FALL_WINDOW_S
                t.drop_height = h0
                break
        dropped = ts <= t.drop_until and h <= (1 - FALL_DROP) * t.drop_height
        return bool(w / h >= self.rules.lying_aspect or dropped)

    def _face_vote(self, t: _Track, face: FaceObs) -> None:
        w = max(face.area, 0.0) * max(face.score, 0.0)
        if w <= 0:
            return
        label = face.worker_id
        t.face_frames += 1
        t.face_weight[label] = t.face_weight.get(label, 0.0) + w
        t.face_sim[label] = t.face_sim.get(label, 0.0) + w * face.similarity
        if t.identity is not None or t.face_frames < FACE_MIN_FRAMES:
            return
        total = sum(t.face_weight.values())
        best = max(t.face_weight, key=lambda k: t.face_weight[k])
        share = t.face_weight[best] / total
        if share >= FACE_MIN_SHARE:
            sim = t.face_sim[best] / t.face_weight[best]
            t.identity = Identity(best, float(np.clip(sim, -1, 1)), share)

    # --- track lifecycle --------------------------------------------------------------------

    def identity(self, track_id: int) -> Identity | None:
        t = self.tracks.get(track_id)
        return t.identity if t else None

    def needs_face(self, track_id: int) -> bool:
        """Whether the track's identity is still undecided (faces worth computing)."""
        t = self.tracks.get(track_id)
        return t is None or t.identity is None

    def forget(self, track_id: int) -> None:
        """The track ended: drop its state (fired alerts stay for switch detection)."""
        self.tracks.pop(track_id, None)
