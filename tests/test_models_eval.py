"""The PPE detector's runtime (edge/detector.py) and `smartsite models eval` (models/eval.py):
metadata, detection on a real photo, the eval JSON line, class names by meaning, and the AP
code on synthetic cases with known answers. Project venv only (no torch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edge.detector import Detector, letterbox
from models import registry
from models.eval import (
    EVAL_IOU,
    average_precision,
    box_iou,
    evaluate,
    map_class_name,
    precision_recall,
)

MODEL = registry.PACKAGE_DIR / registry.spec("ppe_detector").committed
RF100 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "construction-safety-rf100"
CLASSES = ["person", "head", "hard_hat", "vest", "no_vest"]

needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not present")
needs_photos = pytest.mark.skipif(not RF100.is_dir(), reason="../shared/datasets not present")


# --- AP on synthetic cases -------------------------------------------------------------------


def test_box_iou() -> None:
    iou = box_iou(
        np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    )
    assert iou.tolist() == [[1.0, pytest.approx(50 / 150), 0.0]]


def test_perfect_predictions_give_ap_one() -> None:
    gts = [np.array([[10, 10, 50, 60], [100, 100, 140, 190]]), np.array([[0, 0, 20, 20]])]
    dets = [(g.copy(), np.array([0.9, 0.8])[: len(g)]) for g in gts]
    ap50, ap = average_precision(dets, gts)
    assert ap50 == pytest.approx(1.0) and ap == pytest.approx(1.0)


def test_shifted_box_counts_only_below_its_iou() -> None:
    # IoU 0.62: a hit at 0.50, 0.55, 0.60 and a miss at 0.65 ... 0.95 -> AP50 1, AP50-95 3/10.
    gt = [np.array([[0, 0, 100, 100]])]
    det = [(np.array([[0, 0, 100, 62]]), np.array([0.9]))]
    assert box_iou(det[0][0], gt[0])[0, 0] == pytest.approx(0.62)
    ap50, ap = average_precision(det, gt)
    assert ap50 == pytest.approx(1.0)
    assert ap == pytest.approx(0.3)
    # IoU 0.45: a miss everywhere.
    far = [(np.array([[0, 0, 100, 45]]), np.array([0.9]))]
    assert average_precision(far, gt) == (0.0, 0.0)


def test_half_recall_and_a_false_positive_first() -> None:
    gt = [np.array([[0, 0, 10, 10], [50, 50, 60, 60]])]
    # one of two found, precision 1 up to recall 0.5: 51 of the 101 recall points.
    ap50, _ = average_precision([(np.array([[0, 0, 10, 10]]), np.array([0.9]))], gt)
    assert ap50 == pytest.approx(51 / 101)
    # a confident false positive before both hits: precision 2/3 at recall 1 -> AP 2/3.
    boxes = np.array([[200, 200, 210, 210], [0, 0, 10, 10], [50, 50, 60, 60]])
    ap50, _ = average_precision([(boxes, np.array([0.95, 0.9, 0.8]))], gt)
    assert ap50 == pytest.approx(2 / 3, abs=1e-9)
    # no ground truth at all: undefined, not zero.
    assert average_precision([(boxes, np.array([0.9, 0.8, 0.7]))], [np.zeros((0, 4))]) == (
        None,
        None,
    )


def test_duplicate_detection_is_a_false_positive() -> None:
    gt = [np.array([[0, 0, 10, 10]])]
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    p, r = precision_recall([(boxes, np.array([0.9, 0.8]), gt[0])])
    assert (p, r) == (0.5, 1.0)
    ap50, _ = average_precision([(boxes, np.array([0.9, 0.8]))], gt)
    assert ap50 == pytest.approx(1.0)  # the duplicate comes after full recall


# --- names by meaning ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("helmet", "hard_hat"),
        ("Hard Hat", "hard_hat"),
        ("hardhat", "hard_hat"),
        ("capacete", "hard_hat"),
        ("head", "head"),
        ("no hard hat", "head"),
        ("NO-Hardhat", "head"),
        ("no-helmet", "head"),
        ("without_helmet", "head"),
        ("sem_capacete", "head"),
        ("vest", "vest"),
        ("Safety Vest", "vest"),
        ("colete_refletivo", "vest"),
        ("no-vest", "no_vest"),
        ("NO-Safety Vest", "no_vest"),
        ("sem_colete_refletivo", "no_vest"),
        ("person", "person"),
        ("Worker", "person"),
        ("no_vest", "no_vest"),
        ("Safety Cone", None),
        ("machinery", None),
        ("Mask", None),
    ],
)
def test_class_names_map_by_meaning(name: str, expected: str | None) -> None:
    assert map_class_name(name, CLASSES) == expected


def test_a_class_the_model_lacks_maps_to_nothing() -> None:
    assert map_class_name("vest", ["person", "head", "hard_hat"]) is None


# --- the ONNX runtime and the eval ------------------------------------------------------------


@needs_model
def test_detector_reads_metadata() -> None:
    det = Detector(MODEL, threads=2)
    assert det.names == CLASSES
    assert det.imgsz[0] == det.imgsz[1] and det.imgsz[0] % det.stride == 0
    assert det.stride == 32
    meta = det.metadata
    assert meta["licence"] == "AGPL-3.0"
    assert len(meta["data_hash"]) == 64 and len(meta["recipe_hash"]) == 64


def test_letterbox_keeps_aspect_and_centres() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    lb = letterbox(img, (320, 320))
    assert lb.image.shape == (1, 3, 320, 320)
    assert lb.ratio == pytest.approx(1.6) and lb.pad == (0.0, 80.0)
    assert lb.image[0, :, 0, 0] == pytest.approx([114 / 255] * 3)


def _tiny_folder(tmp_path: Path, n: int = 6) -> Path:
    """A few held-out rf100 photos in the ultralytics layout, with rf100's own class names."""
    root = tmp_path / "tiny"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for img in sorted((RF100 / "test" / "images").iterdir())[:n]:
        shutil.copy(img, root / "images" / img.name)
        shutil.copy(RF100 / "test" / "labels" / (img.stem + ".txt"), root / "labels")
    names = yaml.safe_load((RF100 / "data.yaml").read_text())["names"]
    (root / "data.yaml").write_text(yaml.safe_dump({"names": [*names, "safety cone"]}))
    return root


@needs_model
@needs_photos
def test_detector_detects_on_a_real_photo() -> None:
    img_path = sorted((RF100 / "test" / "images").iterdir())[0]
    img = cv2.imread(str(img_path))
    det = Detector(MODEL, threads=2, conf=0.05)
    out = det.detect(img)
    assert len(out) > 0
    h, w = img.shape[:2]
    assert out.boxes.shape == (len(out), 4)
    assert (out.boxes[:, 0] >= 0).all() and (out.boxes[:, 2] <= w).all()
    assert (out.boxes[:, 3] <= h).all() and (out.boxes[:, 2] > out.boxes[:, 0]).all()
    assert set(out.class_ids.tolist()) <= set(range(len(CLASSES)))
    assert (np.diff(out.scores) <= 0).all()


@needs_model
@needs_photos
def test_eval_cli_ends_with_the_json_line(tmp_path: Path) -> None:
    from smartsite.cli import app

    root = _tiny_folder(tmp_path)
    res = CliRunner().invoke(
        app, ["models", "eval", str(root), "--model", str(MODEL), "--latency-runs", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "safety cone" in res.output  # unknown name reported
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["eval"] == "detector"
    assert set(last["per_class"]) == set(CLASSES)
    assert last["latency_ms"] > 0
    for m in last["per_class"].values():
        assert set(m) >= {"ap50", "ap50_95", "precision", "recall"}
    # rf100's 'helmet' boxes were scored as hard_hat: that class has ground truth here
    assert last["per_class"]["hard_hat"]["instances"] > 0
    assert last["per_class"]["hard_hat"]["ap50"] is not None


def _label_with_model_boxes(root: Path, shift_of: dict[str, float] | None = None) -> None:
    """Write the model's confident boxes (the AP run's NMS) as each image's labels, moved by
    ``shift_of[image name]`` (default 0) of their own size right and down (wrapping)."""
    det = Detector(MODEL, threads=2, conf=0.3, iou=EVAL_IOU)
    for img_path in (root / "images").iterdir():
        shift = (shift_of or {}).get(img_path.name, 0.0)
        img = cv2.imread(str(img_path))
        h, w = img.shape[:2]
        out = det.detect(img)
        lines = []
        for (x1, y1, x2, y2), c in zip(out.boxes, out.class_ids, strict=True):
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            cx, cy = (cx + shift * bw) % 1.0, (cy + shift * bh) % 1.0
            lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        (root / "labels" / (img_path.stem + ".txt")).write_text("\n".join(lines))


@needs_model
@needs_photos
def test_eval_matches_perfect_labels(tmp_path: Path) -> None:
    """With the model's own confident boxes written as labels, AP50 is 1 for every class
    that has any: the pipeline (letterbox, decode, NMS, label reading, matching) is
    consistent end to end (AP50-95 too: the boxes are the same up to label rounding)."""
    root = _tiny_folder(tmp_path, 3)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": CLASSES}))
    _label_with_model_boxes(root)
    res = evaluate(MODEL, root, latency_runs=0, conf=0.3)
    scored = [m for m in res.per_class.values() if m["instances"]]
    assert scored
    for m in scored:
        # every label is found before any other box: AP 1; the edge's stricter NMS keeps
        # a subset of them, all hits
        assert m["ap50"] == pytest.approx(1.0, abs=0.01)
        assert m["precision"] == pytest.approx(1.0)


@needs_model
@needs_photos
def test_eval_by_source_scores_each_source_apart(tmp_path: Path) -> None:
    """Source "a" is labelled with the model's own boxes, source "b" with the same boxes
    moved off their objects: `--by-source` shows a perfect "a" and a failing "b", where the
    pooled AP50 hides which source the misses come from."""
    from smartsite.cli import app

    root = _tiny_folder(tmp_path, 4)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": CLASSES}))
    names = sorted(p.name for p in (root / "images").iterdir())
    source_of = {n: "a" if i < 2 else "b" for i, n in enumerate(names)}
    # "b": a quarter of each box on its object at most, IoU < 0.5
    _label_with_model_boxes(root, {n: 0.75 for n, s in source_of.items() if s == "b"})
    images = {f"images/{n}": s for n, s in source_of.items()}
    runner = CliRunner()
    args = ["models", "eval", str(root), "--model", str(MODEL), "--latency-runs", "0"]
    res = runner.invoke(app, [*args, "--by-source"])
    assert res.exit_code == 2
    assert "classes_labelled.json" in res.output  # says what is missing

    everything = {"labelled": CLASSES}
    sidecar = {"sources": {"a": everything, "b": everything}, "images": images}
    (root / "classes_labelled.json").write_text(json.dumps(sidecar))
    res = runner.invoke(app, [*args, "--by-source"])
    assert res.exit_code == 0, res.output
    assert "AP50 per source" in res.output
    per_source = json.loads(res.output.strip().splitlines()[-1])["per_source"]
    assert set(per_source) == {"a", "b"} and per_source["a"] and per_source["b"]
    for m in per_source["a"].values():
        assert m["ap50"] == pytest.approx(1.0, abs=0.01)
    for m in per_source["b"].values():
        assert m["ap50"] < 0.5
