"""Evidence images: the frame with zones, people, PPE boxes and the alert, as a JPEG.

Sent on the protocol's ``evidence/{id}`` topic; always below ``MAX_EVIDENCE_BYTES`` (quality,
then size, step down until it fits).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
import supervision as sv

from edge.config import ZoneConfig
from smartsite.protocol.limits import MAX_EVIDENCE_BYTES
from smartsite.protocol.messages import ZoneType

ZONE_COLOURS = {  # BGR
    ZoneType.DANGER: (0, 0, 255),
    ZoneType.RESTRICTED: (0, 165, 255),
    ZoneType.GATE: (255, 160, 0),
}
PPE_COLOURS = {
    "hard_hat": (0, 200, 0),
    "vest": (0, 200, 200),
    "head": (0, 0, 255),
    "no_vest": (0, 0, 255),
}
ALERT = (0, 0, 255)
PERSON = (255, 255, 255)


def new_evidence_id() -> str:
    """A topic-safe evidence id."""
    return uuid.uuid4().hex


def _label(img: npt.NDArray[np.uint8], text: str, x: int, y: int, colour: tuple[int, ...]) -> None:
    scale = max(0.4, img.shape[0] / 900)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    y = max(th + base, y)
    cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y), colour, -1)
    text_colour = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    cv2.putText(
        img,
        text,
        (x + 1, y - base),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        text_colour,
        thick,
        cv2.LINE_AA,
    )


def annotate(
    frame: npt.NDArray[np.uint8],
    *,
    zones: Sequence[ZoneConfig] = (),
    persons: sv.Detections | None = None,
    ppe: sv.Detections | None = None,
    highlight: Sequence[int] = (),
    title: str = "",
    highlight_zone: str | None = None,
) -> npt.NDArray[np.uint8]:
    """A copy of ``frame`` with zone overlays, people (``highlight`` tracker ids in red), PPE
    boxes and a title line."""
    img = frame.copy()
    h, w = img.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    if zones:
        overlay = img.copy()
        for z in zones:
            pts = np.round(np.asarray(z.polygon, float) * [w - 1, h - 1]).astype(np.int32)
            colour = ZONE_COLOURS.get(z.type, (200, 200, 200))
            cv2.fillPoly(overlay, [pts], colour)
            cv2.polylines(img, [pts], True, colour, thick + (1 if z.id == highlight_zone else 0))
        cv2.addWeighted(overlay, 0.2, img, 0.8, 0, dst=img)
        for z in zones:
            x, y = (np.asarray(z.polygon, float).min(axis=0) * [w - 1, h - 1]).astype(int)
            _label(img, z.name or z.id, int(x), int(y) + 14, ZONE_COLOURS.get(z.type, (200,) * 3))
    if ppe is not None and len(ppe):
        for box, name in zip(ppe.xyxy.astype(int), ppe.data["class_name"], strict=True):
            colour = PPE_COLOURS.get(str(name), (200, 200, 200))
            cv2.rectangle(img, tuple(box[:2]), tuple(box[2:]), colour, thick)
    if persons is not None and len(persons):
        ids = persons.tracker_id if persons.tracker_id is not None else [None] * len(persons)
        for box, tid, conf in zip(persons.xyxy.astype(int), ids, persons.confidence, strict=True):
            hit = tid is not None and int(tid) in set(highlight)
            colour = ALERT if hit else PERSON
            cv2.rectangle(img, tuple(box[:2]), tuple(box[2:]), colour, thick + (1 if hit else 0))
            text = f"#{tid} {conf:.2f}" if tid is not None else f"{conf:.2f}"
            _label(img, text, int(box[0]), int(box[1]), colour)
    if title:
        _label(img, title, 0, 0, ALERT)
    return img


def encode_jpeg(
    img: npt.NDArray[np.uint8], *, quality: int = 85, limit: int = MAX_EVIDENCE_BYTES
) -> bytes:
    """JPEG bytes no larger than ``limit``: lower quality first, then halve the size."""
    q = quality
    while True:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise ValueError("JPEG encoding failed")
        if buf.nbytes <= limit:
            return buf.tobytes()
        if q > 50:
            q -= 15
        else:
            img = cv2.resize(img, (max(1, img.shape[1] // 2), max(1, img.shape[0] // 2)))
