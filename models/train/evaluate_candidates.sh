#!/usr/bin/env bash
# Export every trained run of models/train/runs/ and score it on the val split, as the model
# card reports it. Usage: models/train/evaluate_candidates.sh DATA_DIR OUT_DIR
#   DATA_DIR: a `smartsite datasets build` export; OUT_DIR: where ONNX files and eval logs go.
# Needs the training venv (TRAIN_PY, default /work/venv-train/bin/python) for export and
# ultralytics' own val (the cross-check), and the project venv's `smartsite` for the eval.
set -euo pipefail
DATA=${1:?data dir}
OUT=${2:?out dir}
TRAIN_PY=${TRAIN_PY:-/work/venv-train/bin/python}
SMARTSITE=${SMARTSITE:-smartsite}
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")" && pwd)
for run in "$here"/runs/*/; do
  name=$(basename "$run")
  [ -f "$run/weights/last.pt" ] || continue
  cand=${name%-masked}; cand=${cand%-naive}; strategy=${name##*-}
  # the size the run trained at (its args.yaml), unless SIZES names others
  sizes=${SIZES:-$(sed -n 's/^imgsz: //p' "$run/args.yaml")}
  for imgsz in $sizes; do
    onnx="$OUT/$name-$imgsz.onnx"
    "$TRAIN_PY" "$here/train.py" --data "$DATA" --candidate "$cand" --strategy "$strategy" \
      --name "$name" --no-train --weights last.pt --export "$onnx" --imgsz "$imgsz" | tee "$OUT/$name-$imgsz.export.log"
    for m in "$onnx" "${onnx%.onnx}-int8.onnx"; do
      [ -f "$m" ] || continue
      "$SMARTSITE" models eval "$DATA" --split val --model "$m" | tee "${m%.onnx}.eval.log"
    done
  done
done
