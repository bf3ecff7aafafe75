"""Evaluate the person / PPE detector's ONNX on a labelled folder (``smartsite models eval``).

The folder is in the ultralytics layout: ``DIR/data.yaml`` naming the classes, images under
``DIR/images[/SPLIT]`` and YOLO txt labels under the matching ``DIR/labels[/SPLIT]``. The model
runs through :class:`edge.detector.Detector`, the code the edge agent runs.

- The folder's class names are mapped onto the model's taxonomy by meaning
  (:func:`map_class_name`); names that map to nothing are reported and their boxes skipped.
- AP is COCO-style: detections of a class sorted by score, each matched greedily to the
  unmatched ground-truth box of that class with the highest IoU >= t on the same image; the
  precision envelope is sampled at 101 recall points (0, 0.01, ..., 1) and averaged. AP50 is
  t = 0.50, AP50-95 the mean over t = 0.50, 0.55, ..., 0.95. Detections for AP use a low
  threshold (0.001) and up to 300 per image, as ultralytics' val does.
- Precision and recall are at the operating threshold (the edge's, 0.25 by default), IoU 0.5.
- When the folder holds a ``classes_labelled.json`` (written by ``smartsite datasets build``),
  a class is scored only on the images whose source labels it: a vest detected on a photo
  whose source never boxes vests is neither a false positive nor a miss. With it,
  ``by_source`` also reports AP50 per source, to show which source's drawing a class misses.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
EVAL_CONF = 0.001
EVAL_IOU = 0.7  # NMS IoU for the AP run (ultralytics val's); the operating run keeps the edge's

# --- class names by meaning ----------------------------------------------------------------------

_NEG = r"(no|not|without|missing|sem|non)"
_RULES: list[tuple[str, str]] = [
    # order matters: the negated forms first
    (rf"\b{_NEG}\b.*\b(hard ?hat|hardhat|helmet|capacete|safety hat)s?\b", "head"),
    (rf"\b{_NEG}\b.*\b(vest|hi ?vis|high ?vis|colete|safety jacket)s?\b", "no_vest"),
    (r"\b(hard ?hat|hardhat|helmet|capacete|safety hat)s?\b", "hard_hat"),
    (r"\b(vest|hi ?vis|high ?vis|colete( refletivo)?|reflective jacket|safety jacket)s?\b", "vest"),
    (r"\b(head|bare ?head|face)s?\b", "head"),
    (r"\b(person|persons|people|worker|workers|human|pedestrian|man|woman)\b", "person"),
]


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def map_class_name(name: str, model_names: list[str]) -> str | None:
    """The model class a folder's class name means, or None (unknown: reported, skipped)."""
    key = normalise(name)
    if key in {normalise(n) for n in model_names}:
        return next(n for n in model_names if normalise(n) == key)
    for pattern, target in _RULES:
        if re.search(pattern, key) and target in model_names:
            return target
    return None


# --- AP ------------------------------------------------------------------------------------------


def box_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """IoU of every box in a (n, 4) with every box in b (m, 4), xyxy."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class ClassRecords:
    """Per class: every detection's score and, per IoU threshold, whether it matched."""

    scores: list[float] = field(default_factory=list)
    tp: list[npt.NDArray[np.bool_]] = field(default_factory=list)  # each (len(IOU_THRESHOLDS),)
    n_gt: int = 0

    def add_image(
        self,
        det_boxes: npt.NDArray[np.floating],
        det_scores: npt.NDArray[np.floating],
        gt_boxes: npt.NDArray[np.floating],
    ) -> None:
        self.n_gt += len(gt_boxes)
        order = np.argsort(-np.asarray(det_scores), kind="stable")
        det_boxes = np.asarray(det_boxes).reshape(-1, 4)[order]
        det_scores = np.asarray(det_scores)[order]
        ious = box_iou(det_boxes, gt_boxes)
        matched = np.zeros((len(IOU_THRESHOLDS), len(gt_boxes)), bool)
        for i in range(len(det_boxes)):
            hit = np.zeros(len(IOU_THRESHOLDS), bool)
            for t, thr in enumerate(IOU_THRESHOLDS):
                if not len(gt_boxes):
                    break
                cand = np.where(~matched[t] & (ious[i] >= thr - 1e-12), ious[i], -1.0)
                j = int(cand.argmax())
                if cand[j] >= 0:
                    matched[t, j] = True
                    hit[t] = True
            self.scores.append(float(det_scores[i]))
            self.tp.append(hit)

    def ap(self) -> npt.NDArray[np.float64] | None:
        """AP at each IoU threshold (COCO 101-point); None when the class has no ground truth."""
        if self.n_gt == 0:
            return None
        if not self.scores:
            return np.zeros(len(IOU_THRESHOLDS))
        order = np.argsort(-np.asarray(self.scores), kind="mergesort")
        tp = np.asarray(self.tp)[order].astype(np.float64)  # (n, T)
        ctp = np.cumsum(tp, 0)
        cfp = np.cumsum(1.0 - tp, 0)
        recall = ctp / self.n_gt
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        out = np.zeros(len(IOU_THRESHOLDS))
        for t in range(len(IOU_THRESHOLDS)):
            pr = precision[:, t].copy()
            for k in range(len(pr) - 2, -1, -1):  # envelope: max precision to the right
                pr[k] = max(pr[k], pr[k + 1])
            idx = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
            q = np.where(idx < len(pr), pr[np.minimum(idx, len(pr) - 1)], 0.0)
            out[t] = q.mean()
        return out


def average_precision(
    detections: list[tuple[npt.NDArray, npt.NDArray]],
    ground_truth: list[npt.NDArray],
) -> tuple[float | None, float | None]:
    """AP50 and AP50-95 of one class over images: detections[i] = (boxes, scores),
    ground_truth[i] = boxes (xyxy). Convenience for tests and callers."""
    rec = ClassRecords()
    for (b, s), g in zip(detections, ground_truth, strict=True):
        rec.add_image(np.asarray(b, float), np.asarray(s, float), np.asarray(g, float))
    ap = rec.ap()
    return (None, None) if ap is None else (float(ap[0]), float(ap.mean()))


def precision_recall(
    records: list[tuple[npt.NDArray, npt.NDArray, npt.NDArray]], iou: float = 0.5
) -> tuple[float | None, float | None]:
    """Precision and recall of kept detections (already thresholded): per image
    (det_boxes, det_scores, gt_boxes), greedy by score at ``iou``."""
    tp = fp = n_gt = 0
    for boxes, scores, gt in records:
        n_gt += len(gt)
        order = np.argsort(-np.asarray(scores), kind="stable")
        ious = box_iou(np.asarray(boxes).reshape(-1, 4)[order], gt)
        used = np.zeros(len(gt), bool)
        for i in range(len(order)):
            cand = np.where(~used & (ious[i] >= iou), ious[i], -1.0) if len(gt) else np.zeros(0)
            if len(cand) and cand.max() >= 0:
                used[int(cand.argmax())] = True
                tp += 1
            else:
                fp += 1
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / n_gt if n_gt else None
    return precision, recall


def class_figures(
    records: ClassRecords, operating: list[tuple[npt.NDArray, npt.NDArray, npt.NDArray]]
) -> dict[str, float | int | None]:
    """One class's line of the report: AP50, AP50-95 (all detections), precision and recall
    (``operating``: the detections kept at the operating threshold), ground-truth count."""
    ap = records.ap()
    p, r = precision_recall(operating)
    return {
        "ap50": None if ap is None else round(float(ap[0]), 4),
        "ap50_95": None if ap is None else round(float(ap.mean()), 4),
        "precision": None if p is None else round(p, 4),
        "recall": None if r is None else round(r, 4),
        "instances": records.n_gt,
    }


# --- the folder ----------------------------------------------------------------------------------


@dataclass
class Folder:
    images: list[Path]
    label_dir: Path
    image_dir: Path
    names: list[str]
    labelled: dict[str, set[str]] | None  # image name -> model classes its source labels
    sources: dict[str, str] | None  # image name -> source (classes_labelled.json)


def _names(data: dict) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError("data.yaml has no 'names'")


def open_folder(root: Path, split: str | None = None, use_sidecar: bool = True) -> Folder:
    data = yaml.safe_load((root / "data.yaml").read_text())
    names = _names(data)
    if split:
        image_dir = root / "images" / split
    elif (root / "images").is_dir() and any(
        p.suffix.lower() in IMAGE_SUFFIXES for p in (root / "images").iterdir()
    ):
        image_dir = root / "images"
    elif data.get("val"):
        image_dir = (root / str(data["val"])).resolve()
    else:
        raise ValueError(f"{root}: no images/ with images, no --split and no 'val' in data.yaml")
    if not image_dir.is_dir():
        raise ValueError(f"{image_dir} is not a folder")
    parts = list(image_dir.parts)
    i = len(parts) - 1 - parts[::-1].index("images")  # ultralytics: last /images/ -> /labels/
    parts[i] = "labels"
    label_dir = Path(*parts)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    labelled = sources = None
    side = root / "classes_labelled.json"
    if use_sidecar and side.is_file():
        doc = json.loads(side.read_text())
        sources = {Path(k).name: src for k, src in doc["images"].items()}
        labelled = {k: set(doc["sources"][src]["labelled"]) for k, src in sources.items()}
    return Folder(images, label_dir, image_dir, names, labelled, sources)


def read_labels(path: Path, w: int, h: int) -> tuple[npt.NDArray[np.int64], npt.NDArray]:
    if not path.is_file():
        return np.zeros(0, np.int64), np.zeros((0, 4))
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(r) >= 5]
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    a = np.asarray([[float(v) for v in r[:5]] for r in rows])
    cx, cy, bw, bh = a[:, 1] * w, a[:, 2] * h, a[:, 3] * w, a[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    return a[:, 0].astype(np.int64), boxes


@dataclass
class EvalResult:
    per_class: dict[str, dict[str, float | int | None]]
    latency_ms: float
    mapping: dict[str, str | None]
    unknown: list[str]
    images: int
    labelled_only: bool
    # source -> class -> {"ap50", "instances"}; only with by_source
    per_source: dict[str, dict[str, dict[str, float | int | None]]] | None = None

    def json_line(self) -> str:
        doc = {
            "eval": "detector",
            "per_class": self.per_class,
            "latency_ms": self.latency_ms,
            "images": self.images,
            "labelled_only": self.labelled_only,
        }
        if self.per_source is not None:
            doc["per_source"] = self.per_source
        return json.dumps(doc)


def measure_latency(detector, image: npt.NDArray[np.uint8], runs: int = 50) -> float:
    """Median wall time of ``detect`` (preprocess + model + NMS) over ``runs``, in ms."""
    detector.detect(image)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detector.detect(image)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def evaluate(
    model: Path,
    root: Path,
    *,
    split: str | None = None,
    conf: float = 0.25,
    threads: int = 2,
    use_sidecar: bool = True,
    latency_runs: int = 50,
    limit: int | None = None,
    by_source: bool = False,
) -> EvalResult:
    import cv2

    from edge.detector import DEFAULT_IOU, Detector, letterbox

    det = Detector(model, threads=threads, conf=EVAL_CONF, iou=EVAL_IOU)
    folder = open_folder(root, split, use_sidecar)
    if by_source and folder.sources is None:
        raise ValueError(
            "per-source figures need the folder's classes_labelled.json (written by "
            f"smartsite datasets build), and not --all-images: {root} has none"
        )
    mapping = {n: map_class_name(n, det.names) for n in folder.names}
    unknown = [n for n, m in mapping.items() if m is None]
    id_map = {i: det.names.index(m) for i, (n, m) in enumerate(mapping.items()) if m}
    images = folder.images[:limit] if limit else folder.images
    ap_rec = [ClassRecords() for _ in det.names]
    op_rec: list[list[tuple]] = [[] for _ in det.names]
    src_rec: dict[str, list[ClassRecords]] = {}

    first = None
    for p in images:
        img = cv2.imread(str(p))
        if img is None:
            continue
        if first is None:
            first = img
        h, w = img.shape[:2]
        cls, boxes = read_labels(folder.label_dir / (p.stem + ".txt"), w, h)
        keep = np.asarray([int(c) in id_map for c in cls], bool)
        gcls = np.asarray([id_map[int(c)] for c in cls[keep]], np.int64)
        gboxes = boxes[keep]
        lb = letterbox(img, det.imgsz)
        raw = det.raw(lb.image)[0]
        low = det.decode(raw, lb, (h, w), EVAL_CONF)  # for AP: low threshold, val's NMS
        edge = det.decode(raw, lb, (h, w), conf, DEFAULT_IOU)  # what the edge keeps
        labelled = folder.labelled.get(p.name) if folder.labelled is not None else None
        src_recs = None
        if by_source and folder.sources is not None:
            src = folder.sources.get(p.name, "(unknown)")
            src_recs = src_rec.setdefault(src, [ClassRecords() for _ in det.names])
        for c, name in enumerate(det.names):
            if labelled is not None and name not in labelled:
                continue
            if name not in mapping.values():
                continue
            g = gboxes[gcls == c]
            sel = low.class_ids == c
            ap_rec[c].add_image(low.boxes[sel], low.scores[sel], g)
            if src_recs is not None:
                src_recs[c].add_image(low.boxes[sel], low.scores[sel], g)
            op = edge.class_ids == c
            op_rec[c].append((edge.boxes[op], edge.scores[op], g))
    per_class = {name: class_figures(ap_rec[c], op_rec[c]) for c, name in enumerate(det.names)}
    per_source = None
    if by_source:
        per_source = {
            src: {
                name: {"ap50": round(float(ap[0]), 4), "instances": recs[c].n_gt}
                for c, name in enumerate(det.names)
                if (ap := recs[c].ap()) is not None
            }
            for src, recs in sorted(src_rec.items())
        }
    latency = 0.0
    if first is not None and latency_runs:
        op_det = Detector(model, threads=threads)
        latency = round(measure_latency(op_det, first, latency_runs), 2)
    return EvalResult(
        per_class,
        latency,
        mapping,
        unknown,
        len(images),
        folder.labelled is not None,
        per_source,
    )
