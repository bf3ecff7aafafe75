"""Label readers: YOLO txt, Pascal VOC xml, Roboflow export conventions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

_RF_SUFFIX = re.compile(r"\.rf\.[0-9a-f]{16,}$")
_RF_AUGMENTED = re.compile(r"augmentation was applied to create (\d+) versions", re.I)


@dataclass(frozen=True)
class Box:
    """One box: a class name (upstream or taxonomy) and normalised centre/size."""

    name: str
    cx: float
    cy: float
    w: float
    h: float
    from_polygon: bool = False

    def clipped(self) -> Box | None:
        """The box clipped to the image; None where nothing is left."""
        x0, y0 = max(0.0, self.cx - self.w / 2), max(0.0, self.cy - self.h / 2)
        x1, y1 = min(1.0, self.cx + self.w / 2), min(1.0, self.cy + self.h / 2)
        if x1 - x0 <= 1e-6 or y1 - y0 <= 1e-6:
            return None
        return Box(self.name, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, self.from_polygon)


def read_names(yaml_path: Path) -> list[str]:
    """Class names of a data.yaml (list or {id: name} form)."""
    data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    names = data["names"]
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]


def read_yolo(path: Path, names: list[str]) -> list[Box]:
    """A YOLO txt file (``class cx cy w h`` normalised) with ids resolved to ``names``.

    Roboflow exports mix in segment lines (``class x1 y1 x2 y2 ...``); like ultralytics, those
    become the bounding box of their points (``from_polygon`` set)."""
    boxes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        cls = int(parts[0])
        if not 0 <= cls < len(names):
            raise ValueError(f"{path}: class id {cls} outside the {len(names)} names")
        values = [float(p) for p in parts[1:]]
        if len(values) == 4:
            boxes.append(Box(names[cls], *values))
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            boxes.append(
                Box(names[cls], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, from_polygon=True)
            )
        else:
            raise ValueError(f"{path}: neither a YOLO box nor a segment: {line!r}")
    return boxes


def read_voc(path: Path, image_size: tuple[int, int] | None = None) -> list[Box]:
    """A Pascal VOC xml as normalised boxes (pixel corners, size from <size> or ``image_size``)."""
    root = ET.parse(path).getroot()  # noqa: S314  (local dataset files, not untrusted input)
    size = root.find("size")
    width = int(float(size.findtext("width", "0"))) if size is not None else 0
    height = int(float(size.findtext("height", "0"))) if size is not None else 0
    if (width <= 0 or height <= 0) and image_size:
        width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: no image size in the xml and none given")
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(
            Box(
                obj.findtext("name", "").strip(),
                (x0 + x1) / 2 / width,
                (y0 + y1) / 2 / height,
                (x1 - x0) / width,
                (y1 - y0) / height,
            )
        )
    return boxes


def voc_to_yolo_lines(path: Path, names: list[str]) -> list[str]:
    """Convert one VOC xml to YOLO txt lines with class ids from ``names`` (3 decimals)."""
    index = {n: i for i, n in enumerate(names)}
    return [f"{index[b.name]} {b.cx:.3f} {b.cy:.3f} {b.w:.3f} {b.h:.3f}" for b in read_voc(path)]


def roboflow_stem(filename: str) -> str:
    """The upstream file stem of a Roboflow export name (``img01_png.rf.<hash>.jpg`` ->
    ``img01_png``); augmented copies of one photo share it."""
    return _RF_SUFFIX.sub("", Path(filename).stem)


def roboflow_augmented_versions(folder: Path) -> int:
    """How many versions Roboflow made of each training photo (1: no augmentation)."""
    readme = folder / "README.roboflow.txt"
    if not readme.is_file():
        return 1
    m = _RF_AUGMENTED.search(readme.read_text(encoding="utf-8", errors="replace"))
    return int(m.group(1)) if m else 1
