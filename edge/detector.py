"""The person / PPE detector's runtime: one YOLOv8-style ONNX through onnxruntime.

The edge agent and ``smartsite models eval`` share this code, so the accuracy measured is the
accuracy the site gets. Everything the model needs travels in its ONNX ``metadata_props``
(written by ``models/train/train.py``): ``names`` (a dict literal, class id -> name),
``imgsz`` and ``stride``. Preprocessing is the ultralytics letterbox (aspect kept, centred,
grey 114 padding, RGB, 0-1); the raw head output ``(1, 4 + nc, anchors)`` holds centre-x,
centre-y, width, height in input pixels and one sigmoid score per class; NMS runs per class
(``cv2.dnn.NMSBoxes``). Boxes come back in the original image's pixels (x1, y1, x2, y2).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

DEFAULT_CONF = 0.25  # operating threshold (alerts); eval uses a low one for AP
DEFAULT_IOU = 0.45
MAX_DETECTIONS = 300


@dataclass(frozen=True)
class Detections:
    boxes: npt.NDArray[np.float32]  # (n, 4) x1, y1, x2, y2 in original pixels
    scores: npt.NDArray[np.float32]  # (n,)
    class_ids: npt.NDArray[np.int64]  # (n,)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Letterbox:
    image: npt.NDArray[np.float32]  # (1, 3, size, size)
    ratio: float
    pad: tuple[float, float]  # left, top


def _pair(value: str) -> tuple[int, int]:
    v = ast.literal_eval(value)
    if isinstance(v, int):
        return (v, v)
    h, w = v
    return (int(h), int(w))


def letterbox(img: npt.NDArray[np.uint8], size: tuple[int, int]) -> Letterbox:
    """BGR image -> normalised NCHW RGB tensor of ``size`` (h, w), aspect kept, centred."""
    h, w = img.shape[:2]
    th, tw = size
    r = min(th / h, tw / w)
    nh, nw = round(h * r), round(w * r)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (th - nh) // 2, (tw - nw) // 2
    canvas = cv2.copyMakeBorder(
        img, top, th - nh - top, left, tw - nw - left, cv2.BORDER_CONSTANT, value=(114, 114, 114)
    )
    # one pass for BGR->RGB, HWC->NCHW and 0-1 (numpy's transpose + astype + divide took
    # 0.6 ms more per 720p frame, 5 % of the frame budget at 416)
    x = cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True)
    return Letterbox(x, r, (float(left), float(top)))


class Detector:
    """``Detector(path, threads)``; ``detect(bgr)`` -> :class:`Detections`."""

    def __init__(
        self,
        path: str | Path,
        threads: int = 2,
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DETECTIONS,
    ) -> None:
        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in ("names", "imgsz", "stride") if k not in meta]
        if missing:
            raise ValueError(f"{self.path}: ONNX metadata lacks {', '.join(missing)}")
        names = ast.literal_eval(meta["names"])
        if isinstance(names, dict):
            self.names = [str(names[i]) for i in sorted(names)]
        else:
            self.names = [str(n) for n in names]
        self.imgsz = _pair(meta["imgsz"])
        self.stride = int(ast.literal_eval(meta["stride"]))
        self.metadata = dict(meta)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if all(isinstance(d, int) for d in shape[2:]) and tuple(shape[2:]) != self.imgsz:
            raise ValueError(f"{self.path}: input {shape} does not match imgsz {self.imgsz}")
        self.conf, self.iou, self.max_det = conf, iou, max_det

    @property
    def nc(self) -> int:
        return len(self.names)

    def raw(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The head's output (1, 4 + nc, anchors) for a preprocessed tensor."""
        return self.session.run(None, {self.input_name: x})[0]

    def detect(self, img: npt.NDArray[np.uint8], conf: float | None = None) -> Detections:
        conf = self.conf if conf is None else conf
        lb = letterbox(img, self.imgsz)
        out = self.raw(lb.image)[0]  # (4 + nc, anchors)
        return self.decode(out, lb, img.shape[:2], conf)

    def decode(
        self,
        out: npt.NDArray[np.float32],
        lb: Letterbox,
        shape: tuple[int, int],
        conf: float,
        iou: float | None = None,
    ) -> Detections:
        """Raw head output -> boxes in original pixels, per-class NMS at ``iou``."""
        iou = self.iou if iou is None else iou
        scores_all = out[4 : 4 + self.nc]  # (nc, anchors): rows stay contiguous
        # Every (class, anchor) pair above the threshold is a candidate (ultralytics'
        # multi-label NMS): an anchor may be both a hard hat and, less surely, a head.
        cls, idx = np.nonzero(scores_all > conf)
        empty = Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        )
        if len(idx) == 0:
            return empty
        scores = scores_all[cls, idx].astype(np.float32)
        cx, cy, w, h = out[:4, idx]
        left, top = lb.pad
        ih, iw = shape
        x1 = np.clip((cx - w / 2 - left) / lb.ratio, 0, iw)
        y1 = np.clip((cy - h / 2 - top) / lb.ratio, 0, ih)
        x2 = np.clip((cx + w / 2 - left) / lb.ratio, 0, iw)
        y2 = np.clip((cy + h / 2 - top) / lb.ratio, 0, ih)
        boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
        xywh = np.stack([x1, y1, x2 - x1, y2 - y1], 1).astype(np.float64)
        # per-class NMS in one call (boxes of different classes never suppress each other)
        keep = cv2.dnn.NMSBoxesBatched(xywh, scores, cls.astype(np.int32), conf, iou)
        if len(keep) == 0:
            return empty
        k = np.asarray(keep, dtype=np.int64).reshape(-1)
        k = k[np.argsort(-scores[k], kind="stable")][: self.max_det]
        return Detections(boxes[k], scores[k], cls[k].astype(np.int64))
