"""The training-set tooling (datasets/) on the real photos in ../shared/datasets."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageOps
from typer.testing import CliRunner

from datasets.build import build, split_of_group, tree_digest
from datasets.convert import read_names, read_voc, read_yolo, roboflow_stem, voc_to_yolo_lines
from datasets.sources import BY_NAME, SHARED, SOURCES, SourceSpec, scan
from datasets.taxonomy import CLASSES, class_map, map_name

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")

EXPECTED_MAPPING = {
    "hardhat-workers": {0: "hard_hat", 1: "person", 2: "head"},
    "hardhat-workers-full": {0: "head", 1: "hard_hat", 2: "person"},
    "safety-vest-v4": {0: "hard_hat", 1: "vest", 2: "head", 3: "no_vest"},
    "construction-safety-rf100": {
        0: "hard_hat",
        1: "head",
        2: "no_vest",
        3: "person",
        4: "vest",
    },
    "construction-site-safety": {
        0: "hard_hat",
        1: None,
        2: "head",
        3: None,
        4: "no_vest",
        5: "person",
        6: None,
        7: "vest",
        8: None,
        9: None,
    },
}


def _manifest(out: Path) -> list[dict]:
    with (out / "manifest.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_each_source_maps_by_meaning() -> None:
    assert {s.name for s in SOURCES} == set(EXPECTED_MAPPING)
    for spec in SOURCES:
        names = read_names(SHARED / spec.name / spec.names_file)
        assert class_map(names) == EXPECTED_MAPPING[spec.name], spec.name
        # what a source labels exhaustively is among what its names map to
        assert set(spec.labelled) <= {c for c in class_map(names).values() if c}
    assert map_name("sem_colete_refletivo") == "no_vest"
    assert map_name("NO-Safety Vest") == "no_vest"
    with pytest.raises(KeyError):
        map_name("ladder")


def test_voc_equals_yolo_txt_of_the_same_image() -> None:
    folder = SHARED / "hardhat-workers"
    names = read_names(folder / "safety_helmet_data.yaml")
    compared = 0
    for xml in sorted((folder / "annotations").glob("*.xml")):
        txt = next((folder / "labels").glob(f"*/{xml.stem}.txt"))
        yolo = sorted((b.name, b.cx, b.cy, b.w, b.h) for b in read_yolo(txt, names))
        voc = sorted((b.name, b.cx, b.cy, b.w, b.h) for b in read_voc(xml))
        assert len(yolo) == len(voc), xml.name
        for a, b in zip(yolo, voc, strict=True):
            assert a[0] == b[0], xml.name
            assert max(abs(x - y) for x, y in zip(a[1:], b[1:], strict=True)) < 1.5e-3, xml.name
        # and the converter's own txt output reads back the same
        lines = voc_to_yolo_lines(xml, names)
        assert len(lines) == len(yolo)
        compared += 1
    assert compared == 426


def test_voc_only_source_builds_the_same_labels(tmp_path: Path) -> None:
    """A copy of hardhat-workers with its txt labels removed is read from the VOC xml and
    exports the same boxes as the original."""
    src = SHARED / "hardhat-workers"
    root = tmp_path / "root"
    dst = root / "hardhat-workers"
    stems = sorted(p.stem for p in (src / "images" / "val").glob("*.jpg"))[:8]
    (dst / "images" / "val").mkdir(parents=True)
    (dst / "annotations").mkdir()
    shutil.copy(src / "safety_helmet_data.yaml", dst)
    for s in stems:
        shutil.copy(src / "images" / "val" / f"{s}.jpg", dst / "images" / "val")
        shutil.copy(src / "annotations" / f"{s}.xml", dst / "annotations")
    spec = BY_NAME["hardhat-workers"]
    voc_items = scan(spec, root)
    assert {it.label_kind for it in voc_items} == {"voc"}
    a = build(tmp_path / "voc", root, [spec])
    b = build(tmp_path / "yolo", SHARED, [spec])
    for r in a.exported:
        label = f"{Path(r.out_name).stem}.txt"
        mine = (tmp_path / "voc" / "labels" / r.split / label).read_text().splitlines()
        orig_split = next(x.split for x in b.exported if x.out_name == r.out_name)
        ref = (tmp_path / "yolo" / "labels" / orig_split / label).read_text().splitlines()
        assert len(mine) == len(ref)
        for m, o in zip(sorted(mine), sorted(ref), strict=True):
            mc, *mv = m.split()
            oc, *ov = o.split()
            assert mc == oc
            assert max(abs(float(x) - float(y)) for x, y in zip(mv, ov, strict=True)) < 1.5e-3


def _planted_root(tmp_path: Path) -> tuple[Path, SourceSpec, dict[str, str]]:
    """A small Roboflow-style source from safety-vest-v4 (augmented export: same-stem
    copies) plus planted copies: a resized re-encoded one and a mirrored one."""
    src = SHARED / "safety-vest-v4"
    root = tmp_path / "root"
    dst = root / "planted"
    for split in ("train", "valid"):
        (dst / split / "images").mkdir(parents=True)
        (dst / split / "labels").mkdir(parents=True)
    shutil.copy(src / "data.yaml", dst)
    shutil.copy(src / "README.roboflow.txt", dst)
    train = sorted((src / "train" / "images").glob("*.jpg"))
    augmented = [p for p in train if roboflow_stem(p.name) in ("img01_png", "img02_png")]
    plain = [p for p in train if not roboflow_stem(p.name).startswith("img")][:10]
    for p in augmented + plain:
        shutil.copy(p, dst / "train" / "images")
        shutil.copy(src / "train" / "labels" / f"{p.stem}.txt", dst / "train" / "labels")
    original = plain[0]
    label = src / "train" / "labels" / f"{original.stem}.txt"
    with Image.open(original) as im:
        small = im.convert("RGB").resize((im.width * 3 // 5, im.height * 3 // 5))
        small.save(dst / "valid" / "images" / "planted_resized.jpg", quality=70)
        ImageOps.mirror(im.convert("RGB")).save(
            dst / "valid" / "images" / "planted_mirrored.jpg", quality=90
        )
    shutil.copy(label, dst / "valid" / "labels" / "planted_resized.txt")
    shutil.copy(label, dst / "valid" / "labels" / "planted_mirrored.txt")
    spec = SourceSpec(
        "planted",
        "pl",
        "data.yaml",
        "CC BY 4.0 (test copy)",
        ("head", "hard_hat", "vest", "no_vest"),
    )
    keys = {
        "original": f"pl/train/{original.name}",
        "resized": "pl/val/planted_resized.jpg",
        "mirrored": "pl/val/planted_mirrored.jpg",
    }
    assert len(augmented) == 6
    return root, spec, keys


def test_planted_near_duplicates_share_one_group(tmp_path: Path) -> None:
    root, spec, keys = _planted_root(tmp_path)
    result = build(tmp_path / "out", root, [spec])
    rows = {r["key"]: r for r in _manifest(tmp_path / "out")}
    group = {rows[k]["group"] for k in keys.values()}
    assert len(group) == 1
    assert len({rows[k]["split"] for k in keys.values()}) == 1
    fates = sorted(rows[k]["status"] for k in keys.values())
    assert fates == ["kept", "near-duplicate", "near-duplicate"]
    # two photos x three Roboflow versions -> one kept each
    assert result.stats["augmented_copies"] == 4
    by_group: dict[str, set[str]] = defaultdict(set)
    for r in rows.values():
        by_group[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in by_group.values())
    exported = list((tmp_path / "out" / "images").rglob("*.jpg"))
    assert len(exported) == len(rows) - 4 - 2


def test_build_is_deterministic(tmp_path: Path) -> None:
    sources = ["hardhat-workers-full", "sv4"]
    build(tmp_path / "a", SHARED, sources, limit=40)
    build(tmp_path / "b", SHARED, sources, limit=40)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    first = tree_digest(tmp_path / "a")
    build(tmp_path / "a", SHARED, sources, limit=40)  # rebuilt in place
    assert tree_digest(tmp_path / "a") == first


def test_split_is_a_fixed_function_of_the_group_key() -> None:
    assert split_of_group("hhwf/train/x.jpg") == split_of_group("hhwf/train/x.jpg")
    share = sum(split_of_group(f"k{i}") == "val" for i in range(20000)) / 20000
    assert 0.14 < share < 0.16


def test_full_layout_card_and_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = build(out, SHARED, None, limit=15)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert list(data["names"].values()) == list(CLASSES)
    for split in ("train", "val", "test"):
        for image in (out / "images" / split).iterdir():
            assert (out / "labels" / split / f"{image.stem}.txt").is_file()
    sidecar = json.loads((out / "classes_labelled.json").read_text())
    assert sidecar["sources"]["hardhat-workers"]["mask"] == [0, 1, 1, 0, 0]
    assert sidecar["sources"]["safety-vest-v4"]["mask"] == [0, 1, 1, 1, 1]
    assert len(sidecar["images"]) == len(result.exported)
    # no box of a class its source does not label
    for rel, source in sidecar["images"].items():
        label = out / rel.replace("images/", "labels/", 1)
        ids = {int(line.split()[0]) for line in label.with_suffix(".txt").read_text().splitlines()}
        assert all(sidecar["sources"][source]["mask"][i] for i in ids), rel
    card = (out / "CARD.md").read_text()
    for spec in SOURCES:
        assert spec.name in card
        assert f"| {spec.name} | {spec.licence} |" in card
    assert "CC BY 4.0" in card and "Public Domain" in card
    for name in ("capacete", "sem_colete_refletivo", "NO-Safety Vest", "no-helmet"):
        assert name in card


def test_subset_export_keeps_only_sources_that_label_the_classes(tmp_path: Path) -> None:
    out = tmp_path / "vest"
    result = build(out, SHARED, None, subset=["no_vest", "vest"], limit=15)
    assert result.names == ("vest", "no_vest")
    assert {r.item.source.name for r in result.exported} == {
        "safety-vest-v4",
        "construction-safety-rf100",
        "construction-site-safety",
    }
    ids = {
        int(line.split()[0])
        for p in (out / "labels").rglob("*.txt")
        for line in p.read_text().splitlines()
    }
    assert ids == {0, 1}
    with pytest.raises(ValueError):
        build(tmp_path / "bad", SHARED, None, subset=["helmet"], limit=1)


def test_cli_build(tmp_path: Path) -> None:
    from smartsite.cli import app

    result = CliRunner().invoke(
        app, ["datasets", "build", "--out", str(tmp_path / "o"), "--sources", "sv4", "--limit", "5"]
    )
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert line["datasets"] == "build"
    assert sum(line["images"]["safety-vest-v4"].values()) == 5
