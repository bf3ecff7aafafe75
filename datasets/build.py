"""Build one training set in the ultralytics layout from the shared labelled photos.

Output (``DIR``)::

    images/{train,val,test}/<source key>_<file>   byte copies of the source images
    labels/{train,val,test}/<same stem>.txt        YOLO txt, taxonomy ids (data.yaml order)
    data.yaml                                      names, nc, split folders
    classes_labelled.json                          per source and per image: classes labelled
    manifest.csv                                   every input image: hash, group, fate, split
    CARD.md                                        the dataset card

Steps: scan each source -> map class names by meaning -> phash every image -> collapse
Roboflow augmented copies -> remove near-duplicates (keep the copy whose source labels the
most classes) -> group what is left by scene -> split per group (upstream test -> test,
otherwise sha256 of the group key -> val for the lowest ``val_fraction``, train for the rest).
Everything is sorted and free of timestamps: two builds give identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from datasets import dedup
from datasets.card import render_card
from datasets.convert import Box
from datasets.sources import SHARED, SOURCES, Item, SourceSpec, augmented_versions, scan
from datasets.taxonomy import CLASSES, map_name

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.15
OUTPUT_FILES = ("data.yaml", "classes_labelled.json", "manifest.csv", "CARD.md")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_of_group(group_key: str, val_fraction: float = VAL_FRACTION) -> str:
    """train or val for a group, from the sha256 of its key (fixed, order-independent)."""
    return "val" if int(_sha(group_key)[:15], 16) / 16**15 < val_fraction else "train"


@dataclass
class Record:
    item: Item
    hash: np.ndarray
    mirrored: np.ndarray
    boxes: list[Box] = field(default_factory=list)  # taxonomy names, labelled classes only
    dropped: Counter = field(default_factory=Counter)  # (upstream name, reason) -> n
    status: str = "kept"  # kept / augmented-copy / near-duplicate
    duplicate_of: str = ""
    distance: int | None = None
    group: str = ""
    split: str = ""
    out_name: str = ""

    @property
    def key(self) -> str:
        return self.item.key


@dataclass
class BuildResult:
    out: Path
    names: tuple[str, ...]
    records: list[Record]
    sources: list[SourceSpec]
    subset: tuple[str, ...] | None
    exported: list[Record]
    stats: dict


def map_boxes(item: Item) -> tuple[list[Box], Counter]:
    """Taxonomy boxes of the classes the source labels exhaustively; the rest counted."""
    kept, dropped = [], Counter()
    for b in item.boxes:
        cls = map_name(b.name)
        if cls is None:
            dropped[(b.name, "outside the taxonomy")] += 1
        elif cls not in item.source.labelled:
            reason = "partial" if cls in item.source.partial else "not labelled by source"
            dropped[(b.name, reason)] += 1
        else:
            clipped = Box(cls, b.cx, b.cy, b.w, b.h, b.from_polygon).clipped()
            if clipped is None:
                dropped[(b.name, "empty after clipping")] += 1
            else:
                kept.append(clipped)
    return kept, dropped


def _keep_priority(r: Record) -> tuple:
    # The copy whose source labels the most classes (the labelled sets are nested:
    # hard-hat sets < safety-vest-v4 < rf100 = construction-site-safety), then upstream test,
    # then the most boxes, then a fixed hash order.
    return (
        -len(r.item.source.labelled),
        r.item.split != "test",
        -len(r.boxes),
        _sha(r.key),
    )


def _distance(a: Record, b: Record) -> int:
    d = int(np.bitwise_count(a.hash ^ b.hash).sum())
    return min(d, int(np.bitwise_count(a.hash ^ b.mirrored).sum()))


def _resolve(sources: list[str] | None) -> list[SourceSpec]:
    if not sources:
        return list(SOURCES)
    by_name = {s.name: s for s in SOURCES} | {s.key: s for s in SOURCES}
    unknown = [s for s in sources if s not in by_name]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; known: {[s.name for s in SOURCES]}")
    return [by_name[s] for s in dict.fromkeys(sources)]


def dedupe_and_split(records: list[Record], root: Path, val_fraction: float = VAL_FRACTION) -> dict:
    """Set status, duplicate_of, group and split of every record; return the counts."""
    n = len(records)
    if n == 0:
        return {"augmented_copies": 0, "near_duplicates": 0, "groups": 0, "multi_groups": 0}
    hashes = np.stack([r.hash for r in records])
    mirrored = np.stack([r.mirrored for r in records])
    pairs = dedup.close_pairs(hashes, mirrored, dedup.GROUP_BITS)

    # 1. Roboflow augmented copies: an export made with augmentation names the N versions of
    #    one photo <stem>.rf.<hash> in the same split. No phash gate: a +-15 degree rotation
    #    moves a phash as far as an unrelated photo (checked: all same-stem triples of
    #    safety-vest-v4 train are one photo each).
    specs = {r.item.source for r in records}
    augmented = {s.name for s in specs if augmented_versions(s, root) > 1}
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.item.source.name in augmented:
            buckets[(r.item.source.name, r.item.split, r.item.stem)].append(i)
    for members in buckets.values():
        if len(members) > 1:
            keep = min(members, key=lambda m: _sha(records[m].key))
            for m in members:
                if m != keep:
                    records[m].status = "augmented-copy"
                    records[m].duplicate_of = records[keep].key
                    records[m].distance = _distance(records[m], records[keep])

    # 2. Near-duplicates (the same photo) among what is left.
    uf = dedup.UnionFind(n)
    for i, j, d in pairs:
        if d <= dedup.DUPLICATE_BITS and records[i].status == records[j].status == "kept":
            uf.union(i, j)
    for members in uf.groups().values():
        if len(members) > 1:
            keep = min(members, key=lambda m: _keep_priority(records[m]))
            for m in members:
                if m != keep:
                    records[m].status = "near-duplicate"
                    records[m].duplicate_of = records[keep].key
                    records[m].distance = _distance(records[m], records[keep])

    # 3. Scene groups over every image (removed ones too, tied to the copy kept, so that
    #    differently rotated copies of one photo chain into one group), one split per group.
    uf = dedup.UnionFind(n)
    for i, j, _ in pairs:
        uf.union(i, j)
    position = {r.key: i for i, r in enumerate(records)}
    for i, r in enumerate(records):
        if r.duplicate_of:
            uf.union(i, position[r.duplicate_of])
    groups = uf.groups().values()
    for members in groups:
        key = min(records[m].key for m in members)
        if any(records[m].item.split == "test" for m in members):
            split = "test"
        else:
            split = split_of_group(key, val_fraction)
        for m in members:
            records[m].group = key
            records[m].split = split
    return {
        "augmented_copies": sum(r.status == "augmented-copy" for r in records),
        "near_duplicates": sum(r.status == "near-duplicate" for r in records),
        "groups": len(groups),
        "multi_groups": sum(len(m) > 1 for m in groups),
        "pairs_within_group_bits": len(pairs),
    }


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / "classes_labelled.json").is_file():
            raise FileExistsError(f"{out} is not empty and holds no earlier build; not touching it")
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    for sub in ("images", "labels"):
        for split in SPLITS:
            (out / sub / split).mkdir(parents=True, exist_ok=True)


def build(
    out: Path,
    root: Path = SHARED,
    sources: list[str] | list[SourceSpec] | None = None,
    subset: list[str] | None = None,
    limit: int | None = None,
    val_fraction: float = VAL_FRACTION,
) -> BuildResult:
    """Build the set under ``out`` (see the module docstring). ``subset``: export only these
    classes, and only from sources that label all of them (plain ultralytics training needs
    no masking then)."""
    root = Path(root)
    specs = (
        list(sources)
        if sources and all(isinstance(s, SourceSpec) for s in sources)
        else _resolve(sources)  # type: ignore[arg-type]
    )
    if subset:
        bad = [c for c in subset if c not in CLASSES]
        if bad:
            raise ValueError(f"unknown classes {bad}; taxonomy: {list(CLASSES)}")
        names = tuple(c for c in CLASSES if c in subset)
    else:
        names = CLASSES

    records: list[Record] = []
    for spec in specs:
        for item in scan(spec, root, limit):
            h, m = dedup.phash_pair(item.image)
            boxes, dropped = map_boxes(item)
            records.append(Record(item, h, m, boxes, dropped))
    stats = dedupe_and_split(records, root, val_fraction)

    def exported_source(spec: SourceSpec) -> bool:
        return not subset or set(names) <= set(spec.labelled)

    out = Path(out)
    _prepare_out(out)
    exported: list[Record] = []
    index = {c: i for i, c in enumerate(names)}
    taken: set[str] = set()
    for r in sorted(records, key=lambda r: r.key):
        if r.status != "kept" or not exported_source(r.item.source):
            continue
        r.out_name = f"{r.item.source.key}_{r.item.image.name}"
        if r.out_name in taken:
            raise ValueError(f"two images would be written as {r.out_name}")
        taken.add(r.out_name)
        shutil.copyfile(r.item.image, out / "images" / r.split / r.out_name)
        lines = [
            f"{index[b.name]} {b.cx:.6f} {b.cy:.6f} {b.w:.6f} {b.h:.6f}\n"
            for b in r.boxes
            if b.name in index
        ]
        label = out / "labels" / r.split / f"{Path(r.out_name).stem}.txt"
        label.write_text("".join(lines), encoding="utf-8")
        exported.append(r)

    data = {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    (out / "data.yaml").write_text(
        "# Written by `smartsite datasets build`; see CARD.md. Ultralytics resolves the\n"
        "# folders against this file's directory (no `path:` on purpose: builds stay\n"
        "# byte-identical wherever they are written).\n" + yaml.safe_dump(data, sort_keys=False),
        encoding="utf-8",
    )
    sidecar = {
        "names": list(names),
        "subset": list(subset) if subset else None,
        "rule": (
            "For an image of source S, a class in sources[S].labelled is boxed exhaustively: "
            "a missing box there is background. A class not listed carries no information "
            "on that image: mask its classification loss (sources[S].mask, 1 = learn) or "
            "train on a --subset export."
        ),
        "sources": {
            s.name: {
                "key": s.key,
                "labelled": [c for c in names if c in s.labelled],
                "mask": [int(c in s.labelled) for c in names],
                "partial_not_exported": list(s.partial),
                "exported": exported_source(s),
            }
            for s in specs
        },
        "images": {f"images/{r.split}/{r.out_name}": r.item.source.name for r in exported},
    }
    (out / "classes_labelled.json").write_text(
        json.dumps(sidecar, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _write_manifest(out / "manifest.csv", records)
    subset_names = tuple(names) if subset else None
    result = BuildResult(out, names, records, specs, subset_names, exported, stats)
    (out / "CARD.md").write_text(render_card(result, root), encoding="utf-8")
    return result


def _write_manifest(path: Path, records: list[Record]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["key", "source", "upstream_split", "file", "phash", "group", "status",
         "duplicate_of", "distance", "split", "out"]
    )  # fmt: skip
    for r in sorted(records, key=lambda r: r.key):
        w.writerow(
            [r.key, r.item.source.name, r.item.split, r.item.image.name, dedup.to_hex(r.hash),
             r.group, r.status, r.duplicate_of, "" if r.distance is None else r.distance,
             r.split, r.out_name]
        )  # fmt: skip
    path.write_text(buf.getvalue(), encoding="utf-8")


def tree_digest(out: Path) -> str:
    """sha256 over every file's relative path and bytes (to check that builds are identical)."""
    h = hashlib.sha256()
    for p in sorted(Path(out).rglob("*")):
        if p.is_file():
            h.update(p.relative_to(out).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def counts(result: BuildResult) -> dict:
    """Images and boxes per source, split and class of the exported set."""
    images: dict = defaultdict(Counter)
    boxes: dict = defaultdict(Counter)
    for r in result.exported:
        images[r.item.source.name][r.split] += 1
        for b in r.boxes:
            if b.name in result.names:
                boxes[(r.item.source.name, r.split)][b.name] += 1
    return {"images": images, "boxes": boxes}
