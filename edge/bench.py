"""``smartsite bench edge VIDEO``: frames/s of the camera pipeline against its limits.

Measured in one run, on the same frames, with the same thread budget (``--threads``, 2 = the
gateway's cores):

* ``pipeline_fps``: :class:`edge.pipeline.CameraPipeline` end to end (letterbox, onnxruntime,
  decode, NMS, ByteTrack, PPE association, rules, events, evidence JPEGs when alerts fire);
* ``inference_fps``: bare ``InferenceSession.run`` on the already letterboxed frames — the
  ceiling no pipeline on this model can pass;
* ``ultralytics_fps``: what a user would pick instead: ultralytics ``model.track`` (predict +
  its ByteTrack) on the same ONNX file and frames, run with the training venv's interpreter
  (ultralytics is not an edge dependency). Its tracker imports ``lap``; when that is not
  installed, a stand-in on ``ultralytics.utils.ops.linear_sum_assignment`` (ultralytics' own
  fallback solver) is put on its path rather than letting ultralytics pip-install it.

The three run in turn, ``--rounds`` times (default 3), and each figure is the median of its
rounds: a shared VM's speed drifts by a third within minutes, and measuring the three side by
side in each round keeps that drift out of the ratios. The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import CameraConfig, ThreadsConfig, ZoneConfig
from edge.detector import Detector, letterbox
from edge.pipeline import CameraPipeline
from models.registry import committed_path

TRAIN_PYTHON = Path(os.environ.get("SMARTSITE_TRAIN_PYTHON", "/work/venv-train/bin/python"))
DEFAULT_MODEL = committed_path("ppe_detector")
WARMUP = 5

_LAP_SHIM = """
import numpy as np
__version__ = "scipy-shim"
def lapjv(cost, extend_cost=True, cost_limit=np.inf, return_cost=True):
    from ultralytics.utils.ops import linear_sum_assignment
    cost = np.asarray(cost)
    x = -np.ones(cost.shape[0], dtype=int)
    y = -np.ones(cost.shape[1], dtype=int)
    if cost.size:
        for i, j in zip(*linear_sum_assignment(cost)):
            if cost[i, j] <= cost_limit:
                x[i], y[j] = j, i
    return 0.0, x, y
"""

_ULTRA = r"""
import json, sys, time
import cv2, torch
torch.set_num_threads(int(sys.argv[3]))
from ultralytics import YOLO
model = YOLO(sys.argv[1], task="detect")
cap = cv2.VideoCapture(sys.argv[2])
frames = []
limit = int(sys.argv[4])
while len(frames) < limit:
    ok, f = cap.read()
    if not ok:
        break
    frames.append(f)
imgsz = int(sys.argv[5])
kw = dict(persist=True, imgsz=imgsz, device="cpu", verbose=False, tracker="bytetrack.yaml")
for f in frames[:5]:
    model.track(f, **kw)
model.predictor.trackers[0].reset()
t0 = time.perf_counter()
for f in frames:
    model.track(f, **kw)
dt = time.perf_counter() - t0
print(json.dumps({"frames": len(frames), "fps": len(frames) / dt}))
"""


def read_frames(video: Path, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {video}")
    out = []
    while len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    if not out:
        raise ValueError(f"{video}: no frames")
    return out


def bench_inference(model: Path, frames: list[np.ndarray], threads: int) -> float:
    det = Detector(model, threads)
    xs = [letterbox(f, det.imgsz).image for f in frames]
    for x in xs[:WARMUP]:
        det.raw(x)
    t0 = time.perf_counter()
    for x in xs:
        det.raw(x)
    return len(xs) / (time.perf_counter() - t0)


def demo_camera(video: Path, fps: float = 10.0) -> CameraConfig:
    """A camera with one danger zone over the lower half (zone rules run too)."""
    return CameraConfig(
        id="bench",
        source=str(video),
        fps=fps,
        zones=[
            ZoneConfig(
                id="pit",
                type="danger",
                polygon=[(0.0, 0.6), (1.0, 0.6), (1.0, 1.0), (0.0, 1.0)],
                crowd_limit=3,
                loiter_s=10,
            )
        ],
    )


def bench_pipeline(
    model: Path, frames: list[np.ndarray], threads: int, video: Path
) -> tuple[float, dict[str, int]]:
    cam = demo_camera(video)
    tcfg = ThreadsConfig(opencv=1, onnx_intra_op=threads)
    pipe = CameraPipeline.from_paths(cam, model, device="bench-gw", threads=tcfg)
    for i, f in enumerate(frames[:WARMUP]):
        pipe.process(f, float(i))
    pipe = CameraPipeline(cam, pipe.detector, device="bench-gw", threads=tcfg)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        for e in pipe.process(f, 1_000.0 + i / cam.fps):
            counts[e.kind.value] = counts.get(e.kind.value, 0) + 1
    dt = time.perf_counter() - t0
    return len(frames) / dt, counts


def bench_ultralytics(
    model: Path, video: Path, threads: int, limit: int, imgsz: int
) -> tuple[float | None, str]:
    if not TRAIN_PYTHON.exists():
        return None, f"ultralytics not measured: no training interpreter at {TRAIN_PYTHON}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "YOLO_OFFLINE": "1",
            "YOLO_CONFIG_DIR": tmp,
        }
        probe = subprocess.run(
            [str(TRAIN_PYTHON), "-c", "import lap"], capture_output=True, env=env, check=False
        )
        note = ""
        if probe.returncode != 0:
            (Path(tmp) / "lap.py").write_text(_LAP_SHIM)
            env["PYTHONPATH"] = tmp
            note = " (lap absent: stand-in on ultralytics' own solver)"
        proc = subprocess.run(
            [
                str(TRAIN_PYTHON),
                "-c",
                _ULTRA,
                str(model),
                str(video),
                str(threads),
                str(limit),
                str(imgsz),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
            check=False,
        )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, "ultralytics failed: " + " | ".join(tail)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["fps"]), f"ultralytics {result['frames']} frames{note}"


def run_bench(
    video: Path,
    *,
    model: Path = DEFAULT_MODEL,
    threads: int = 2,
    max_frames: int = 300,
    ultralytics: bool = True,
    rounds: int = 3,
    say: Any = print,
) -> dict[str, Any]:
    frames = read_frames(video, max_frames)
    h, w = frames[0].shape[:2]
    say(f"{video}: {len(frames)} frames {w}x{h}; model {model}; {threads} threads")
    imgsz = Detector(model, 1).imgsz[0]
    runs: dict[str, list[float]] = {"inference": [], "pipeline": [], "ultralytics": []}
    note = ""
    for r in range(1, rounds + 1):
        runs["inference"].append(bench_inference(model, frames, threads))
        fps, counts = bench_pipeline(model, frames, threads, video)
        runs["pipeline"].append(fps)
        line = f"round {r}: inference {runs['inference'][-1]:.1f}, pipeline {fps:.1f}"
        if ultralytics:
            u, note = bench_ultralytics(model, video, threads, len(frames), imgsz)
            if u is None:  # not installed or failed: say why once, measure the rest
                say(note)
                ultralytics = False
            else:
                runs["ultralytics"].append(u)
                line += f", ultralytics {u:.1f}"
        say(line + f" frames/s; the pipeline emitted {counts}")
    inference = statistics.median(runs["inference"])
    pipeline = statistics.median(runs["pipeline"])
    ultra = statistics.median(runs["ultralytics"]) if runs["ultralytics"] else None
    say(
        f"medians of {rounds}: inference {inference:.1f}, pipeline {pipeline:.1f}"
        + (f", ultralytics {ultra:.1f} ({note})" if ultra else "")
    )
    result = {
        "bench": "edge",
        "frames": len(frames),
        "threads": threads,
        "rounds": rounds,
        "pipeline_fps": round(pipeline, 2),
        "inference_fps": round(inference, 2),
        "ultralytics_fps": round(ultra, 2) if ultra else None,
        "ratio_vs_ultralytics": round(pipeline / ultra, 3) if ultra else None,
        "ratio_vs_inference": round(pipeline / inference, 3),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="edge pipeline benchmark")
    ap.add_argument("video", type=Path)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    result = run_bench(
        a.video, model=a.model, threads=a.threads, max_frames=a.max_frames, rounds=a.rounds
    )
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
