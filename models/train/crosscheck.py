"""Ultralytics' own val on an exported ONNX, to check ``smartsite models eval`` against it:

    /work/venv-train/bin/python models/train/crosscheck.py MODEL.onnx DATA_DIR

Prints one JSON line: per class AP50 and AP50-95 on DATA_DIR's val split, every image scored
(compare with ``smartsite models eval DATA_DIR --split val --all-images --model MODEL.onnx``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    from ultralytics import YOLO

    model, data = Path(sys.argv[1]), Path(sys.argv[2])
    m = YOLO(str(model), task="detect")
    imgsz = int(sys.argv[3]) if len(sys.argv) > 3 else None
    r = m.val(
        data=str(data / "data.yaml"),
        split="val",
        batch=1,
        conf=0.001,
        iou=0.7,
        plots=False,
        device="cpu",
        workers=0,
        verbose=False,
        **({"imgsz": imgsz} if imgsz else {}),
    )
    names = r.names
    per = {}
    for i, c in enumerate(r.box.ap_class_index):
        per[names[int(c)]] = {
            "ap50": round(float(r.box.ap50[i]), 4),
            "ap50_95": round(float(r.box.ap[i]), 4),
        }
    print(json.dumps({"crosscheck": "ultralytics-val", "model": model.name, "per_class": per}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
