"""A demo video from real site photos (no licensed site video exists in ../shared/datasets).

Each photo is held for ``hold`` frames with a slow zoom and pan (so the tracker sees motion),
followed by ``gap`` blank frames (people leave: tracks end before the next scene). The photos
come with their labelled heads (people without a hard hat) and hard hats, so a test knows how
many ``no hard hat`` alerts to expect. The default photos are from the *upstream test split*
of Hard Hat Workers (public domain), which the PPE training set keeps out of training.

    python -m edge.demo_video OUT.avi            # or .mp4
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
HARDHAT_FULL = DATASETS / "hardhat-workers-full"


@dataclass(frozen=True)
class Photo:
    path: Path
    heads: tuple[tuple[float, float, float, float], ...]  # normalised cx, cy, w, h
    hard_hats: tuple[tuple[float, float, float, float], ...]


def _names(root: Path) -> list[str]:
    import yaml

    data = yaml.safe_load((root / "data.yaml").read_text())
    names = data["names"]
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)


def select_photos(
    root: Path = HARDHAT_FULL,
    split: str = "test",
    *,
    min_heads: int = 1,
    max_heads: int = 3,
    max_hard_hats: int = 3,
    min_box_h: float = 0.12,
    limit: int | None = None,
) -> list[Photo]:
    """Photos with ``min_heads``..``max_heads`` bare heads, every head and hard hat at least
    ``min_box_h`` of the image tall (near enough to judge), in name order."""
    names = _names(root)
    head, hat = names.index("head"), names.index("helmet")
    out: list[Photo] = []
    for label in sorted((root / split / "labels").glob("*.txt")):
        rows = [ln.split() for ln in label.read_text().splitlines() if ln.strip()]
        heads = tuple(tuple(map(float, r[1:5])) for r in rows if int(r[0]) == head)
        hats = tuple(tuple(map(float, r[1:5])) for r in rows if int(r[0]) == hat)
        if not (min_heads <= len(heads) <= max_heads and len(hats) <= max_hard_hats):
            continue
        if any(b[3] < min_box_h for b in heads + hats):
            continue
        image = next((root / split / "images").glob(label.stem + ".*"), None)
        if image is not None:
            out.append(Photo(image, heads, hats))  # type: ignore[arg-type]
        if limit is not None and len(out) >= limit:
            break
    return out


def _fit(
    img: npt.NDArray[np.uint8], size: tuple[int, int]
) -> tuple[npt.NDArray[np.uint8], float, int, int]:
    w, h = size
    ih, iw = img.shape[:2]
    r = min(w / iw, h / ih)
    nw, nh = round(iw * r), round(ih * r)
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y : y + nh, x : x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas, r, x, y


@dataclass(frozen=True)
class DemoFrame:
    photo: int  # index into the photos; -1 for a gap frame
    image: npt.NDArray[np.uint8]
    heads: npt.NDArray[np.float32]  # (n, 4) x1, y1, x2, y2 in this frame's pixels
    hard_hats: npt.NDArray[np.float32]


def _boxes(
    labels: tuple[tuple[float, float, float, float], ...],
    shape: tuple[int, int],
    r: float,
    off: tuple[int, int],
    m: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    ih, iw = shape
    out = []
    for cx, cy, bw, bh in labels:
        x1, y1 = (cx - bw / 2) * iw * r + off[0], (cy - bh / 2) * ih * r + off[1]
        x2, y2 = (cx + bw / 2) * iw * r + off[0], (cy + bh / 2) * ih * r + off[1]
        p1 = m @ np.array([x1, y1, 1.0])
        p2 = m @ np.array([x2, y2, 1.0])
        out.append([p1[0], p1[1], p2[0], p2[1]])
    return np.asarray(out, np.float32).reshape(-1, 4)


def frames(
    photos: list[Photo],
    *,
    hold: int = 30,
    gap: int = 0,
    size: tuple[int, int] = (640, 480),
    zoom: float = 0.06,
    pan: float = 0.02,
):
    """Yield :class:`DemoFrame` s: each photo ``hold`` times, zooming and panning, then
    ``gap`` blank frames; with the labelled heads and hard hats where they are in the frame."""
    w, h = size
    none = np.zeros((0, 4), np.float32)
    for n, photo in enumerate(photos):
        img = cv2.imread(str(photo.path))
        if img is None:
            raise FileNotFoundError(photo.path)
        base, r, ox, oy = _fit(img, size)
        direction = 1 if n % 2 == 0 else -1
        for k in range(hold):
            a = k / max(1, hold - 1)
            z = 1.0 + zoom * a
            tx = (w - w * z) / 2 + direction * pan * w * (a - 0.5)
            ty = (h - h * z) / 2
            m = np.array([[z, 0, tx], [0, z, ty]], np.float32)
            shape = img.shape[:2]
            yield DemoFrame(
                n,
                cv2.warpAffine(base, m, (w, h), borderMode=cv2.BORDER_REFLECT),
                _boxes(photo.heads, shape, r, (ox, oy), m),
                _boxes(photo.hard_hats, shape, r, (ox, oy), m),
            )
        blank = np.zeros((h, w, 3), np.uint8)
        for _ in range(gap):
            yield DemoFrame(-1, blank, none, none)


def write_video(
    photos: list[Photo],
    out: Path,
    *,
    fps: float = 10.0,
    hold: int = 30,
    gap: int = 0,
    size: tuple[int, int] = (640, 480),
) -> Path:
    """Write the video (``.avi``: MJPG, always available; ``.mp4``: mp4v)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter.fourcc(*("mp4v" if out.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(out), fourcc, fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {out}")
    try:
        for f in frames(photos, hold=hold, gap=gap, size=size):
            writer.write(f.image)
    finally:
        writer.release()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--hold", type=int, default=30, help="frames per photo")
    ap.add_argument("--gap", type=int, default=0, help="blank frames after each photo")
    ap.add_argument("--limit", type=int, default=None, help="at most this many photos")
    a = ap.parse_args(argv)
    photos = select_photos(limit=a.limit)
    write_video(photos, a.out, fps=a.fps, hold=a.hold, gap=a.gap)
    heads = sum(len(p.heads) for p in photos)
    print(f"{a.out}: {len(photos)} photos, {heads} people without a hard hat")


if __name__ == "__main__":
    main()
