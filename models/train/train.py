"""Train, export and check the PPE detector (issue 3). Runs in the training venv only:

    /work/venv-train/bin/python models/train/train.py --data DIR --candidate v8n-320
    /work/venv-train/bin/python models/train/train.py --data DIR --candidate v8n-320 --export OUT

Resumable: a run lives in ``models/train/runs/<name>/`` (name = candidate + strategy); when
``weights/last.pt`` is there and the schedule is not finished, training resumes from it
(ultralytics ``resume=True``). A finished run cannot be resumed (ultralytics strips its
optimizer); a candidate with ``init: runs/<name>/weights/last.pt`` continues from its weights
with a fresh schedule instead. Each session appends where and how long it ran to
``runs/<name>/training.json``. ``--export`` writes the ONNX (fixed input, metadata_props:
names, imgsz, stride, data_hash, licence, recipe_hash), checks it against the PyTorch model on
the same val images (max abs diff of the raw outputs, printed), and with ``export.int8`` a
dynamic-quantized variant next to it.

Missing classes: ``strategy: masked`` multiplies, per image, the classification BCE by the
source's class mask from ``classes_labelled.json`` (mosaic: the AND of the tiles' masks), so a
hard-hat photo with unboxed vests teaches nothing about vests; ``naive`` trains on the union.
A candidate's ``class_weights`` (class name -> factor) scales those classes' BCE on top.
A candidate's ``train`` mapping overrides the shared ultralytics train arguments for it alone.
A candidate with ``average`` (a list of runs' weights) averages them instead of training.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import random
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
LICENCE = "AGPL-3.0"

# Set by main() before the trainer is built (CPU: workers=0, one process; GPU: forked
# dataloader workers inherit them).
_MASKS: dict[str, np.ndarray] = {}  # image file name -> class mask (1 = labelled)
_BLUR = {"p": 0.0, "max_kernel": 7}


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def recipe_of(config: dict, candidate: str) -> dict:
    """The part of the config that determines one candidate's weights."""
    c = {k: v for k, v in config.items() if k not in ("candidates",)}
    c["candidate"] = {"name": candidate, **config["candidates"][candidate]}
    return c


def make_recipe(config: dict, candidate: str, strategy: str, epochs: int) -> dict:
    recipe = recipe_of(config, candidate)
    recipe["strategy"] = strategy
    recipe["candidate"]["epochs"] = epochs
    return recipe


def recipe_hash(recipe: dict) -> str:
    return sha256_bytes(json.dumps(recipe, sort_keys=True).encode())


def data_hash(data_dir: Path) -> str:
    """sha256 of the dataset manifest (every input image's hash, fate and split)."""
    return sha256_bytes((data_dir / "manifest.csv").read_bytes())


def load_masks(data_dir: Path) -> dict[str, np.ndarray]:
    side = json.loads((data_dir / "classes_labelled.json").read_text())
    masks = {}
    for rel, source in side["images"].items():
        masks[Path(rel).name] = np.asarray(side["sources"][source]["mask"], dtype=np.float32)
    return masks


# --- dataset and loss hooks ----------------------------------------------------------------------


class RandomBlur:
    """Gaussian or horizontal motion blur (focus, rain, moving workers) with probability p."""

    def __init__(self, p: float, max_kernel: int) -> None:
        self.p, self.kmax = p, max(3, max_kernel)

    def __call__(self, labels: dict) -> dict:
        if self.p <= 0 or random.random() > self.p:  # noqa: S311 (seeded by ultralytics)
            return labels
        img = labels["img"]
        k = random.choice(range(3, self.kmax + 1, 2))  # noqa: S311
        if random.random() < 0.5:  # noqa: S311
            img = cv2.GaussianBlur(img, (k, k), 0)
        else:
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            img = cv2.filter2D(img, -1, kernel)
        labels["img"] = img
        return labels


def _mix_transforms(t) -> list:
    """The Mosaic transforms inside a (nested) ultralytics Compose."""
    from ultralytics.data.augment import Mosaic

    found = []
    for x in getattr(t, "transforms", []):
        if isinstance(x, Mosaic):
            found.append(x)
        found.extend(_mix_transforms(x))
        if getattr(x, "pre_transform", None) is not None:
            found.extend(_mix_transforms(x.pre_transform))
    return found


def _dataset_class():
    from ultralytics.data.dataset import YOLODataset

    class SiteDataset(YOLODataset):
        """YOLODataset + blur; masked: the per-image class mask, and mosaics built from images
        of one mask group (sources labelling the same classes), so a mosaic's mask is exact
        (the AND over its tiles, kept as a guard, equals it)."""

        _tiles: list | None = None
        _group: tuple | None = None
        _groups: dict | None = None

        def build_transforms(self, hyp=None):
            t = super().build_transforms(hyp)
            if self.augment and _BLUR["p"] > 0:
                t.insert(len(t.transforms) - 1, RandomBlur(_BLUR["p"], _BLUR["max_kernel"]))
            if _MASKS:
                for m in _mix_transforms(t):
                    m.get_indexes = functools.partial(self._group_indexes, getattr(m, "n", 4) - 1)
            return t

        def _group_indexes(self, k: int) -> list[int]:
            if self._groups is None:
                self._groups = {}
                for i, f in enumerate(self.im_files):
                    self._groups.setdefault(tuple(_MASKS[Path(f).name]), []).append(i)
            pool = self._groups[self._group] if self._group is not None else range(len(self))
            return [random.choice(pool) for _ in range(k)]  # noqa: S311 (seeded)

        def get_image_and_label(self, index):
            label = super().get_image_and_label(index)
            if _MASKS and self._tiles is not None:
                self._tiles.append(_MASKS[Path(label["im_file"]).name])
            return label

        def __getitem__(self, index):
            if not _MASKS:
                return super().__getitem__(index)
            self._tiles = []
            self._group = tuple(_MASKS[Path(self.im_files[index]).name])
            out = super().__getitem__(index)  # mosaic calls get_image_and_label for its tiles
            out["cls_mask"] = torch.from_numpy(np.min(np.stack(self._tiles), 0))
            self._tiles = self._group = None
            return out

    return SiteDataset


def _patch_loss() -> None:
    """v8DetectionLoss multiplies the BCE by ``class_weights`` (1, 1, nc); per batch we set it
    to the images' masks (b, 1, nc) when the batch carries them (training batches only)."""
    from ultralytics.utils.loss import v8DetectionLoss

    if getattr(v8DetectionLoss, "_site_masked", False):
        return
    orig = v8DetectionLoss.get_assigned_targets_and_loss

    def masked(self, preds, batch, **kw):
        m = batch.get("cls_mask") if isinstance(batch, dict) else None
        if m is None:
            return orig(self, preds, batch, **kw)
        w0 = self.class_weights
        mask = torch.stack(list(m)).to(self.device).float().unsqueeze(1)  # (b, 1, nc)
        self.class_weights = mask if w0 is None else mask * w0
        try:
            return orig(self, preds, batch, **kw)
        finally:
            self.class_weights = w0

    v8DetectionLoss.get_assigned_targets_and_loss = masked
    v8DetectionLoss._site_masked = True


def _trainer_class(threads: int, class_weights: dict[str, float] | None = None):
    from ultralytics.data.build import get_split_fraction
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils import colorstr
    from ultralytics.utils.torch_utils import unwrap_model

    ds_cls = _dataset_class()

    class SiteTrainer(DetectionTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # ultralytics' select_device sets cpu_count - 1 threads: one on a 2-core machine
            torch.set_num_threads(threads)

        def set_class_weights(self):
            """The candidate's ``class_weights`` (by class name, default 1) scale each class's
            BCE, positives and negatives alike; the masked loss multiplies them by the mask."""
            super().set_class_weights()
            if class_weights:
                names = [self.data["names"][i] for i in range(self.data["nc"])]
                unknown = sorted(set(class_weights) - set(names))
                if unknown:
                    raise ValueError(f"ppe.yaml class_weights: unknown classes {unknown}")
                w = [float(class_weights.get(n, 1.0)) for n in names]
                unwrap_model(self.model).class_weights = torch.tensor(w, device=self.device)

        def build_dataset(self, img_path, mode="train", batch=None):
            if mode != "train":
                return super().build_dataset(img_path, mode, batch)
            gs = max(int(unwrap_model(self.model).stride.max()), 32)
            a = self.args
            return ds_cls(
                img_path=img_path,
                imgsz=a.imgsz,
                batch_size=batch,
                augment=True,
                hyp=a,
                rect=a.rect,
                cache=a.cache or None,
                single_cls=a.single_cls or False,
                stride=gs,
                pad=0.0,
                prefix=colorstr("train: "),
                task=a.task,
                classes=a.classes,
                data=self.data,
                fraction=get_split_fraction(a.fraction, "train"),
            )

    return SiteTrainer


# --- training ------------------------------------------------------------------------------------


def epochs_done(run: Path) -> int:
    csv = run / "results.csv"
    if not csv.is_file():
        return 0
    return max(0, len(csv.read_text().strip().splitlines()) - 1)


def record(run: Path, entry: dict, meta: dict) -> None:
    path = run / "training.json"
    doc = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
    doc.update(meta)
    doc["sessions"].append(entry)
    doc["wall_s_total"] = round(sum(s["wall_s"] for s in doc["sessions"]), 1)
    doc["epochs_done"] = entry["epochs_to"]
    path.write_text(json.dumps(doc, indent=1) + "\n")


def train(config: dict, candidate: str, data_dir: Path, name: str, args) -> Path:
    from ultralytics import YOLO

    cand = config["candidates"][candidate]
    run = RUNS / name
    last = run / "weights" / "last.pt"
    epochs = args.epochs or cand["epochs"]
    recipe = make_recipe(config, candidate, args.strategy, epochs)
    torch.set_num_threads(args.threads)
    trainer = _trainer_class(args.threads, cand.get("class_weights"))
    before = epochs_done(run)
    t0, started = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if last.is_file() and before >= epochs:
        print(f"{name}: {before}/{epochs} epochs done; nothing to train")
        return run
    interrupted = None
    try:
        if last.is_file():
            print(f"{name}: resuming from {last} ({before}/{epochs} epochs)")
            YOLO(str(last)).train(resume=True, trainer=trainer, device=args.device)
        else:
            run.mkdir(parents=True, exist_ok=True)
            init = {"pretrained": str(HERE / cand["init"])} if cand.get("init") else {}
            YOLO(cand["model"]).train(
                trainer=trainer,
                data=str(data_dir / "data.yaml"),
                imgsz=cand["imgsz"],
                epochs=epochs,
                seed=config["seed"],
                deterministic=config["deterministic"],
                device=args.device,
                project=str(RUNS),
                name=name,
                exist_ok=True,
                save_period=1,
                **{**config["train"], **cand.get("train", {}), **init},
            )
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: record the session, then stop
        interrupted = exc
    wall = time.perf_counter() - t0
    meta = {
        "candidate": candidate,
        "strategy": args.strategy,
        "recipe_hash": recipe_hash(recipe),
        "data_hash": data_hash(data_dir),
        "epochs_planned": epochs,
    }
    if cand.get("init"):  # the starting weights, so the chain of runs stays traceable
        meta["init"] = cand["init"]
        meta["init_sha256"] = sha256_bytes((HERE / cand["init"]).read_bytes())
    entry = {
        "started": started,
        "wall_s": round(wall, 1),
        "epochs_from": before,
        "epochs_to": epochs_done(run),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device != "cpu" else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,  # ultralytics resets the count by the end: record what ran
        "host": platform.node(),
        "torch": torch.__version__,
        "ultralytics": __import__("ultralytics").__version__,
    }
    entry["interrupted"] = interrupted is not None
    record(run, entry, meta)
    print(json.dumps({"train": name, **entry}))
    if interrupted is not None:
        raise SystemExit(130)
    return run


def average(config: dict, candidate: str, data_dir: Path, name: str, args) -> Path:
    """A candidate with ``average: [weights, ...]`` trains nothing: its ``weights/last.pt`` is
    the element-wise mean of those runs' weights (same network; a "model soup")."""
    from ultralytics import YOLO

    sources = config["candidates"][candidate]["average"]
    yolos = [YOLO(str(HERE / s)) for s in sources]
    models = [y.model.float() for y in yolos]
    sds = [m.state_dict() for m in models]
    mean = {
        k: (sum(sd[k] for sd in sds) / len(sds)) if v.is_floating_point() else v
        for k, v in sds[0].items()
    }
    run = RUNS / name
    (run / "weights").mkdir(parents=True, exist_ok=True)
    ckpt = yolos[0].ckpt  # the first input's checkpoint dict, as ultralytics loaded it
    models[0].load_state_dict(mean)
    ckpt["model"] = models[0].half()  # ultralytics' stripped-checkpoint format
    torch.save(ckpt, run / "weights" / "last.pt")
    doc = {
        "candidate": candidate,
        "strategy": args.strategy,
        "recipe_hash": recipe_hash(make_recipe(config, candidate, args.strategy, 0)),
        "data_hash": data_hash(data_dir),
        "average": [
            {"weights": s, "sha256": sha256_bytes((HERE / s).read_bytes())} for s in sources
        ],
    }
    (run / "training.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"average": name, "of": sources}))
    return run


# --- export --------------------------------------------------------------------------------------


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """The edge's preprocessing (edge/detector.py): keep aspect, pad 114, RGB, 0-1, NCHW."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.full((size, size, 3), 114, np.uint8)
    out[top : top + nh, left : left + nw] = resized
    return np.ascontiguousarray(out[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255


def export(config: dict, candidate: str, data_dir: Path, run: Path, out: Path, args) -> dict:
    import onnx
    import onnxruntime as ort
    from ultralytics import YOLO

    cand = config["candidates"][candidate]
    ex = config["export"]
    weights = run / "weights" / args.weights
    imgsz = args.imgsz or cand["imgsz"]
    doc = (
        json.loads((run / "training.json").read_text()) if (run / "training.json").is_file() else {}
    )
    f = YOLO(str(weights)).export(
        format="onnx", imgsz=imgsz, opset=ex["opset"], dynamic=False, simplify=False, batch=1
    )
    m = onnx.load(f)
    props = {p.key: p.value for p in m.metadata_props}
    props.update(
        {
            "data_hash": doc.get("data_hash") or data_hash(data_dir),
            "licence": LICENCE,
            "license": LICENCE,
            "recipe_hash": doc.get("recipe_hash")
            or recipe_hash(
                make_recipe(config, candidate, args.strategy, args.epochs or cand["epochs"])
            ),
            "recipe": f"models/train/ppe.yaml {candidate} strategy {args.strategy}",
            "epochs": str(doc.get("epochs_done", "")),
            "trained_imgsz": str(cand["imgsz"]),
        }
    )
    del m.metadata_props[:]
    for k, v in sorted(props.items()):
        m.metadata_props.add(key=k, value=str(v))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out))
    Path(f).unlink(missing_ok=True)

    # ONNX == PyTorch on the same val images (raw head output, before NMS).
    pt = YOLO(str(weights)).model.float().eval()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    imgs = sorted((data_dir / "images" / "val").iterdir())[: ex["parity_images"]]
    worst, worst_box, worst_score = 0.0, 0.0, 0.0
    for p in imgs:
        x = letterbox(cv2.imread(str(p)), imgsz)
        with torch.no_grad():
            y = pt(torch.from_numpy(x))
        y = (y[0] if isinstance(y, (list, tuple)) else y).numpy()
        o = sess.run(None, {iname: x})[0]
        d = np.abs(o - y)
        worst = max(worst, float(d.max()))
        worst_box = max(worst_box, float(d[:, :4].max()))  # input pixels
        worst_score = max(worst_score, float(d[:, 4:].max()))  # sigmoid scores
    print(
        f"ONNX vs PyTorch, raw outputs on {len(imgs)} val images: max abs diff {worst:.3g} "
        f"(boxes {worst_box:.3g} px, scores {worst_score:.3g})"
    )
    result = {
        "onnx": str(out),
        "bytes": out.stat().st_size,
        "max_abs_diff": worst,
        "max_abs_diff_boxes_px": worst_box,
        "max_abs_diff_scores": worst_score,
    }
    if ex.get("int8"):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = out.with_name(out.stem + "-int8.onnx")
        quantize_dynamic(str(out), str(q), weight_type=QuantType.QUInt8)
        qm = onnx.load(str(q))
        if not {p.key for p in qm.metadata_props} >= set(props):
            del qm.metadata_props[:]
            for k, v in sorted(props.items()):
                qm.metadata_props.add(key=k, value=str(v))
            onnx.save(qm, str(q))
        result["int8"] = str(q)
        result["int8_bytes"] = q.stat().st_size
    print(json.dumps({"export": candidate, **result}))
    return result


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=HERE / "ppe.yaml")
    ap.add_argument("--data", type=Path, required=True, help="`smartsite datasets build` output")
    ap.add_argument("--candidate", default="v8n-320")
    ap.add_argument("--strategy", choices=("masked", "naive"), default=None)
    ap.add_argument("--epochs", type=int, default=None, help="override the candidate's epochs")
    ap.add_argument("--name", default=None, help="run name (default candidate-strategy)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device", default=None, help="cpu or a CUDA index (default: 0 when CUDA is there)"
    )
    ap.add_argument("--no-train", action="store_true", help="only export an existing run")
    ap.add_argument("--export", type=Path, default=None, help="write the ONNX here")
    ap.add_argument("--weights", default="best.pt", help="best.pt or last.pt of the run")
    ap.add_argument("--imgsz", type=int, default=None, help="export input size (default: trained)")
    ap.add_argument("--set", action="append", default=[], help="train arg override k=v (smoke)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    args.device = args.device or ("0" if torch.cuda.is_available() else "cpu")

    config = yaml.safe_load(args.config.read_text())
    for kv in args.set:
        k, v = kv.split("=", 1)
        config["train"][k] = yaml.safe_load(v)
    args.strategy = args.strategy or config["strategy"]
    name = args.name or f"{args.candidate}-{args.strategy}"
    data_dir = args.data.resolve()
    _BLUR.update(config.get("blur", {}))
    if args.strategy == "masked":
        _MASKS.update(load_masks(data_dir))
        _patch_loss()
    run = RUNS / name
    if not args.no_train:
        make = average if "average" in config["candidates"][args.candidate] else train
        run = make(config, args.candidate, data_dir, name, args)
    if args.export:
        export(config, args.candidate, data_dir, run, args.export, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
