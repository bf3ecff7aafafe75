"""The labelled photo sets in ../shared/datasets and how each is read.

Each source names which taxonomy classes it labels *exhaustively* (every instance in every
image is boxed): training may treat the absence of such a box as background. Classes it does
not label, or labels only sparsely (``partial``), say nothing about the background and are
masked or subset away by the training step (see classes_labelled.json and ``--subset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets.convert import (
    Box,
    read_names,
    read_voc,
    read_yolo,
    roboflow_augmented_versions,
    roboflow_stem,
)
from datasets.taxonomy import map_name

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
SPLIT_NAMES = {"train": "train", "valid": "val", "val": "val", "test": "test"}


@dataclass(frozen=True)
class SourceSpec:
    name: str  # folder under the datasets root
    key: str  # short prefix of output file names
    names_file: str  # data.yaml with the class names, relative to the folder
    licence: str  # as stated in SOURCE.txt
    labelled: tuple[str, ...]  # taxonomy classes boxed exhaustively
    partial: tuple[str, ...] = ()  # boxed sometimes: not exported
    note: str = ""


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "hardhat-workers",
        "hhw",
        "safety_helmet_data.yaml",
        "Public Domain / CC0 1.0 (Hard Hat Workers, Northeastern University - China)",
        ("head", "hard_hat"),
        ("person",),
        "YOLO txt and Pascal VOC of the same boxes (VOC used where a txt is missing)",
    ),
    SourceSpec(
        "hardhat-workers-full",
        "hhwf",
        "data.yaml",
        "Public Domain (Hard Hat Workers, Northeastern University - China)",
        ("head", "hard_hat"),
        ("person",),
        "person boxes in 79 of 2,400 images only",
    ),
    SourceSpec(
        "safety-vest-v4",
        "sv4",
        "data.yaml",
        "CC BY 4.0 (Roboflow Universe, Safety vest - v4)",
        ("head", "hard_hat", "vest", "no_vest"),
        (),
        "Portuguese names; Roboflow 3x augmented export, copies collapsed",
    ),
    SourceSpec(
        "construction-safety-rf100",
        "rf100",
        "data.yaml",
        "CC BY 4.0 (Roboflow 100, construction-safety-gsnvb)",
        ("person", "head", "hard_hat", "vest", "no_vest"),
    ),
    SourceSpec(
        "construction-site-safety",
        "css",
        "data.yaml",
        "CC BY 4.0 (Roboflow Universe, Construction Site Safety v28)",
        ("person", "head", "hard_hat", "vest", "no_vest"),
        (),
        "masks, cones, machinery and vehicles dropped",
    ),
)
BY_NAME = {s.name: s for s in SOURCES}


@dataclass
class Item:
    """One labelled image of a source."""

    source: SourceSpec
    split: str  # upstream split: train / val / test
    image: Path
    boxes: list[Box]  # upstream class names
    label_kind: str  # yolo / voc / none
    stem: str = field(init=False)

    def __post_init__(self) -> None:
        self.stem = roboflow_stem(self.image.name)

    @property
    def key(self) -> str:
        """Unique, stable id: ``<source key>/<upstream split>/<file name>``."""
        return f"{self.source.key}/{self.split}/{self.image.name}"


def _split_dirs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(split, image dir, label dir) for Roboflow (``train/images``) and flat
    (``images/train``) layouts."""
    out = []
    for d in sorted(folder.iterdir()):
        if d.is_dir() and d.name in SPLIT_NAMES and (d / "images").is_dir():
            out.append((SPLIT_NAMES[d.name], d / "images", d / "labels"))
    if (folder / "images").is_dir():
        for d in sorted((folder / "images").iterdir()):
            if d.is_dir() and d.name in SPLIT_NAMES:
                out.append((SPLIT_NAMES[d.name], d, folder / "labels" / d.name))
    return out


def scan(spec: SourceSpec, root: Path, limit: int | None = None) -> list[Item]:
    """Every labelled image of ``spec`` under ``root``, sorted; ``limit`` keeps the first N."""
    folder = root / spec.name
    names = read_names(folder / spec.names_file)
    for n in names:
        map_name(n)  # fail early on an unmapped class name
    items = []
    for split, image_dir, label_dir in _split_dirs(folder):
        for image in sorted(image_dir.iterdir()):
            if image.suffix.lower() not in IMAGE_EXTS:
                continue
            txt = label_dir / f"{image.stem}.txt"
            xml = folder / "annotations" / f"{image.stem}.xml"
            if txt.is_file():
                items.append(Item(spec, split, image, read_yolo(txt, names), "yolo"))
            elif xml.is_file():
                items.append(Item(spec, split, image, read_voc(xml), "voc"))
            else:
                items.append(Item(spec, split, image, [], "none"))
    items.sort(key=lambda it: it.key)
    return items[:limit] if limit else items


def augmented_versions(spec: SourceSpec, root: Path) -> int:
    return roboflow_augmented_versions(root / spec.name)


def source_txt(spec: SourceSpec, root: Path) -> str:
    path = root / spec.name / "SOURCE.txt"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
