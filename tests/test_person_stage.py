"""`python -m models.person_stage`: a TF Object Detection API SSD (as ONNX) scored on person
boxes. The real SSDLite needs tensorflow to convert (models/pretrained/convert_ssdlite.sh), so
this runs a real ONNX with that model's output signature and fixed detections
(tests/data/make_tf_ssd.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from models.person_stage import TfSsd, score_ssd

SSD = Path(__file__).resolve().parent / "data" / "tf_ssd_const.onnx"


def test_boxes_come_back_in_pixels_persons_only() -> None:
    boxes, scores = TfSsd(SSD, threads=1).detect(np.zeros((100, 200, 3), np.uint8))
    # (ymin, xmin, ymax, xmax) normalised -> (x1, y1, x2, y2) pixels; class 3 and the padding
    # row past num_detections are dropped
    np.testing.assert_allclose(boxes, [[40, 10, 80, 50], [0, 0, 40, 20]], atol=1e-4)
    assert scores.tolist() == pytest.approx([0.9, 0.3])


def test_score_on_a_labelled_folder(tmp_path: Path) -> None:
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": ["person", "helmet"]}))
    cv2.imwrite(str(tmp_path / "images" / "val" / "a.jpg"), np.zeros((100, 200, 3), np.uint8))
    # the person the SSD finds at 0.9, and a helmet (not scored)
    (tmp_path / "labels" / "val" / "a.txt").write_text("0 0.3 0.3 0.2 0.4\n1 0.1 0.1 0.2 0.2\n")
    strict = score_ssd(SSD, tmp_path, "val", conf=0.4, threads=1)
    assert strict["ap50"] == pytest.approx(1.0) and strict["instances"] == 1
    assert strict["precision"] == 1.0 and strict["recall"] == 1.0
    loose = score_ssd(SSD, tmp_path, "val", conf=0.25, threads=1)
    assert loose["precision"] == 0.5  # the 0.3 box in the corner is a false positive
