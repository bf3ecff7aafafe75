"""BIM on the real IFC models in ../shared/datasets/ifc and a real PostgreSQL: import facts
from SOURCE.txt, the work schedule, re-import, placements and their resolution, per-storey
GLB files, and every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import count
from pydantic import ValidationError
from typer.testing import CliRunner

from bim import placement, store
from bim.errors import (
    BimImportError,
    CorruptFileError,
    EmptyFileError,
    NoStoreysError,
    NotIfcError,
    PlacementError,
    TruncatedFileError,
    UnsupportedSchemaError,
)
from bim.geometry import OUTSIDE, GlbCache
from bim.models import CameraZoneIn, DevicePlacementIn, Point, ZoneIn
from smartsite.cli import app
from smartsite.db.registry import DeviceIn, ProjectIn, upsert_device, upsert_project
from smartsite.settings import get_settings


def _ifc_dir() -> Path | None:
    for d in (
        Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ifc",
        Path("/work/shared/datasets/ifc"),
    ):
        if d.is_dir():
            return d
    return None


IFC_DIR = _ifc_dir()
MODELS = sorted(IFC_DIR.rglob("*.ifc")) if IFC_DIR else []
needs_models = pytest.mark.skipif(
    IFC_DIR is None, reason="../shared/datasets/ifc (the real IFC models) is not on this machine"
)

# From ../shared/datasets/ifc/SOURCE.txt (counted there with ifcopenshell 0.9.0). Walls,
# slabs, ... count the class with its StandardCase / ElementedCase subtypes (IFC2X3 style).
FACTS: dict[str, dict[str, Any]] = {
    "duplex.ifc": {
        "schema": "IFC2X3",
        "storeys": ["T/FDN", "Level 1", "Level 2", "Roof"],  # bottom-up
        "spaces": 21,
        "IfcWall": 57,
        "IfcSlab": 21,
        "IfcBeam": 8,
        "IfcDoor": 14,
        "IfcWindow": 24,
        "IfcStair": 2,
    },
    "AC20-FZK-Haus.ifc": {
        "schema": "IFC4",
        "storeys": ["Erdgeschoss", "Dachgeschoss"],
        "spaces": 7,
        "IfcWall": 13,
        "IfcSlab": 4,
        "IfcBeam": 4,
        "IfcDoor": 5,
        "IfcWindow": 11,
        "IfcStair": 1,
    },
    "IfcOpenHouse_IFC4.ifc": {
        "schema": "IFC4",
        "storeys": 1,
        "spaces": 0,
        "IfcWall": 4,
        "IfcSlab": 2,
        "IfcDoor": 1,
        "IfcWindow": 5,
        "IfcRoof": 1,
    },
    "ISSUE_021_Mini Project.ifc": {
        "schema": "IFC2X3",
        "storeys": 1,
        "IfcSlab": 24,
        "IfcColumn": 26,
        "IfcBeam": 1949,
    },
    "AC11-FZK-Haus-IFC.ifc": {
        "schema": "IFC2X3",
        "storeys": ["Erdgeschoss", "Dachgeschoss"],
        "spaces": 7,
        "IfcWall": 13,
        "IfcSlab": 4,
        "IfcColumn": 1,
        "IfcBeam": 51,
        "IfcDoor": 5,
        "IfcWindow": 11,
        "IfcStair": 1,
    },
    "AC11-Institute-Var-2-IFC.ifc": {
        "schema": "IFC2X3",
        "storeys": 5,
        "first_storey": ("Keller", -3.0),
        "last_storey": ("Dachgeschoss", 9.0),
        "spaces": 82,
        "IfcWall": 119,
        "IfcSlab": 26,
        "IfcColumn": 2,
        "IfcDoor": 77,
        "IfcWindow": 206,
        "IfcStair": 4,
    },
    "AC90R1-niedriha-V2-2x3.ifc": {
        "schema": "IFC2X3",
        "storeys": 4,
        "spaces": 19,
        "IfcWall": 45,
        "IfcSlab": 8,
        "IfcColumn": 4,
        "IfcBeam": 13,
        "IfcDoor": 16,
        "IfcWindow": 16,
        "IfcStair": 2,
    },
    "House.ifc": {
        "schema": "IFC2X3",
        "storeys": 3,
        "no_site": True,
        "spaces": 13,
        "IfcWall": 46,
        "IfcSlab": 13,
        "IfcColumn": 5,
        "IfcDoor": 19,
        "IfcWindow": 23,
        "IfcRoof": 4,
        "IfcStair": 5,
    },
    "construction-scheduling-task.ifc": {
        "schema": "IFC4X3_ADD2",
        "storeys": ["Ground Level"],
        "spaces": 0,
        "IfcWall": 4,
        "IfcSlab": 1,
        "tasks": 8,
    },
}


def model(name: str) -> Path:
    if IFC_DIR is None:
        pytest.skip("../shared/datasets/ifc (the real IFC models) is not on this machine")
    found = [p for p in MODELS if p.name == name]
    assert found, f"{name} is missing from {IFC_DIR}"
    return found[0]


def _classes(by_class: dict[str, int], cls: str) -> int:
    return sum(n for c, n in by_class.items() if re.fullmatch(cls + r"(StandardCase)?", c)) + sum(
        n for c, n in by_class.items() if c == cls + "ElementedCase"
    )


@pytest.fixture
def project(db: psycopg.Connection) -> str:
    upsert_project(db, ProjectIn(id="P-BIM", name="BIM test site"))
    return "P-BIM"


# ---------------------------------------------------------------- import: facts of every model


@needs_models
def test_every_model_in_the_folder_has_its_facts_here() -> None:
    assert MODELS, f"no *.ifc under {IFC_DIR}"
    assert {p.name for p in MODELS} == set(FACTS), "a model was added or removed: update FACTS"


@needs_models
@pytest.mark.parametrize("name", sorted(FACTS))
def test_every_model_imports_with_the_counts_of_its_source(
    db: psycopg.Connection, project: str, name: str
) -> None:
    path = model(name)
    facts = FACTS[name]
    report = store.import_model(db, project, path)
    m = report.model
    assert (m.version, m.schema_name, m.file_name) == (1, facts["schema"], name)
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.file_size == path.stat().st_size
    counts = m.counts
    storeys = facts["storeys"]
    assert counts["storeys"] == (len(storeys) if isinstance(storeys, list) else storeys)
    assert counts["spaces"] == facts.get("spaces", 0)
    assert counts["tasks"] == facts.get("tasks", 0)
    for cls, n in facts.items():
        if cls.startswith("Ifc"):
            assert _classes(counts["by_class"], cls) == n, cls
    # the same numbers are in the tables, not only in the summary
    assert count(db, "SELECT count(*) FROM bim_nodes WHERE model_id = %s", m.id) == sum(
        1 for _ in _walk(store.tree(db, project).roots)
    )
    assert (
        count(db, "SELECT count(*) FROM bim_elements WHERE model_id = %s", m.id)
        == (counts["elements"])
    )

    tree = store.tree(db, project)
    found = [n for n in _walk(tree.roots) if n.kind == "storey"]
    if isinstance(storeys, list):
        assert [s.name for s in found] == storeys
    elevations = [s.elevation for s in found]
    assert all(e is not None for e in elevations)
    assert elevations == sorted(elevations), "storeys come bottom-up"
    if "first_storey" in facts:
        assert (found[0].name, pytest.approx(found[0].elevation)) == facts["first_storey"]
        assert (found[-1].name, pytest.approx(found[-1].elevation)) == facts["last_storey"]
    spaces = [n for n in _walk(tree.roots) if n.kind == "space"]
    assert len(spaces) == facts.get("spaces", 0)
    # every space hangs under a storey of a building, and has an outline
    for s in spaces:
        row = db.execute(
            "SELECT building_id, storey_id, footprint IS NOT NULL FROM bim_nodes "
            "WHERE model_id = %s AND global_id = %s",
            (m.id, s.global_id),
        ).fetchone()
        assert row is not None and row[0] and row[1] in {f.global_id for f in found}
        assert row[2], f"space {s.name} has no outline"
    project_node = tree.roots[0]
    assert project_node.kind == "project"
    top = [c.kind for c in project_node.children]
    assert top == (["building"] if facts.get("no_site") else ["site"])


def _walk(nodes: list[Any]) -> Iterator[Any]:
    for n in nodes:
        yield n
        yield from _walk(n.children)


@needs_models
@pytest.mark.parametrize("name", ["duplex.ifc", "AC11-Institute-Var-2-IFC.ifc"])
def test_elements_are_on_the_storey_ifcopenshell_finds(
    db: psycopg.Connection, project: str, name: str
) -> None:
    import ifcopenshell
    import ifcopenshell.util.element as ue

    m = store.import_model(db, project, model(name)).model
    stored = dict(
        db.execute(
            "SELECT global_id, storey_id FROM bim_elements WHERE model_id = %s", (m.id,)
        ).fetchall()
    )
    f = ifcopenshell.open(str(model(name)))
    expected = {}
    for el in f.by_type("IfcElement"):
        # ifcopenshell's own walk: container of the element or of what it is part of
        c, e = None, el
        while e is not None and c is None:
            c = ue.get_container(e)
            e = ue.get_aggregate(e) or getattr(ue, "get_nest", lambda _: None)(e)
        while c is not None and not c.is_a("IfcBuildingStorey"):
            c = ue.get_aggregate(c)
        if c is not None:
            expected[el.GlobalId] = c.GlobalId
    assert expected, "the model has elements on storeys"
    assert {g: stored[g] for g in expected} == expected


@needs_models
def test_quantities_are_stored_in_si_units(db: psycopg.Connection, project: str) -> None:
    # House.ifc is in millimetres: its wall lengths must come out in metres
    m = store.import_model(db, project, model("House.ifc")).model
    lengths = [
        r[0]
        for r in db.execute(
            "SELECT (quantities->'Quantities'->>'NominalLength')::float FROM bim_elements "
            "WHERE model_id = %s AND ifc_class LIKE 'IfcWall%%' "
            "AND quantities->'Quantities' ? 'NominalLength'",
            (m.id,),
        )
    ]
    assert lengths and all(0.1 < x < 100 for x in lengths), lengths
    fzk = store.import_model(db, project, model("AC20-FZK-Haus.ifc")).model
    q = db.execute(
        "SELECT quantities->'BaseQuantities' FROM bim_elements WHERE model_id = %s "
        "AND name = 'Wand-Int-ERDG-4'",
        (fzk.id,),
    ).fetchone()
    assert q is not None
    assert q[0]["Length"] == pytest.approx(4.17) and q[0]["Width"] == pytest.approx(0.24)


# ---------------------------------------------------------------- work schedule


@needs_models
def test_the_schedule_example_has_its_tasks(db: psycopg.Connection, project: str) -> None:
    store.import_model(db, project, model("construction-scheduling-task.ifc"))
    tree = store.tree(db, project)
    tasks = {t.name: t for t in tree.tasks}
    assert len(tree.tasks) == 8
    assert set(tasks) == {
        "Ground Level",
        "Slab (Standard)",
        "Slab #1",
        "Wall (Standard)",
        "Wall #1",
        "Wall #2",
        "Wall #3",
        "Wall #4",
    }
    assert {t.schedule_id for t in tree.tasks} == {"2LoWUCZHr7YvZks8lmqjcw"}  # IfcWorkSchedule
    gid = {n: t.global_id for n, t in tasks.items()}
    root = tasks["Ground Level"]
    assert root.parent_id is None
    assert {n for n, t in tasks.items() if t.parent_id == root.global_id} == {
        "Slab (Standard)",
        "Wall (Standard)",
    }
    assert tasks["Wall #3"].parent_id == gid["Wall (Standard)"]
    # each wall after the slab (finish-start), and the walls one after another
    assert tasks["Wall #1"].predecessors == [gid["Slab #1"]]
    assert set(tasks["Wall #2"].predecessors) == {gid["Slab #1"], gid["Wall #1"]}
    assert tasks["Wall #3"].schedule_start.isoformat() == "2010-09-23T08:00:00"  # type: ignore[union-attr]
    assert tasks["Wall #3"].schedule_finish.isoformat() == "2010-09-23T16:00:00"  # type: ignore[union-attr]
    assert root.schedule_start.isoformat() == "2010-09-20T08:00:00"  # type: ignore[union-attr]
    assert root.schedule_finish.isoformat() == "2010-09-24T16:00:00"  # type: ignore[union-attr]
    assert root.schedule_duration == "P0Y0M1DT16H0M0S"
    # the tasks build real elements of the model: the slab and the four walls
    elements = {
        g: c
        for g, c in db.execute(
            "SELECT global_id, ifc_class FROM bim_elements e JOIN bim_models m "
            "ON m.id = e.model_id WHERE m.project_id = %s",
            (project,),
        )
    }
    assert elements[tasks["Slab #1"].products[0]] == "IfcSlab"
    assert {elements[tasks[f"Wall #{i}"].products[0]] for i in range(1, 5)} == {"IfcWall"}
    storey = next(n for n in _walk(tree.roots) if n.kind == "storey")
    assert root.products == [storey.global_id]


@needs_models
def test_models_without_tasks_have_an_empty_schedule(db: psycopg.Connection, project: str) -> None:
    store.import_model(db, project, model("IfcOpenHouse_IFC4.ifc"))
    assert store.tree(db, project).tasks == []


# ---------------------------------------------------------------- versions and re-import


def _new_version(src: Path, tmp_path: Path, vanish: list[str]) -> Path:
    """A changed copy of a model: each GlobalId in ``vanish`` is given a new one (as when an
    element is deleted and drawn again)."""
    text = src.read_bytes()
    for i, gid in enumerate(vanish):
        new = f"0NEW{i:02d}".ljust(22, "x").encode()
        assert text.count(b"'" + gid.encode() + b"'") == 1
        text = text.replace(b"'" + gid.encode() + b"'", b"'" + new + b"'")
    out = tmp_path / f"v2-{src.name}"
    out.write_bytes(text)
    return out


def _devices(db: psycopg.Connection, project: str, *ids: str, kind: str = "camera") -> None:
    for d in ids:
        upsert_device(db, DeviceIn(id=d, project_id=project, kind=kind))  # type: ignore[arg-type]


def _first(
    db: psycopg.Connection, project: str, sql_where: str, table: str = "bim_elements"
) -> str:
    row = db.execute(
        f"SELECT t.global_id FROM {table} t JOIN bim_models m ON m.id = t.model_id "
        f"WHERE m.project_id = %s AND {sql_where} ORDER BY t.global_id LIMIT 1",
        (project,),
    ).fetchone()
    assert row is not None, sql_where
    return row[0]


@needs_models
def test_the_same_file_again_is_unchanged(db: psycopg.Connection, project: str) -> None:
    first = store.import_model(db, project, model("IfcOpenHouse_IFC4.ifc"))
    again = store.import_model(db, project, model("IfcOpenHouse_IFC4.ifc"))
    assert again.unchanged and again.model == first.model
    assert count(db, "SELECT count(*) FROM bim_models") == 1


@needs_models
def test_reimport_keeps_placements_that_resolve_and_reports_the_others(
    db: psycopg.Connection, project: str, tmp_path: Path
) -> None:
    src = model("duplex.ifc")
    store.import_model(db, project, src)
    _devices(db, project, "cam-keep", "cam-gone", "cam-zone")
    kept_space = _first(db, project, "t.kind = 'space'", "bim_nodes")
    gone_door = _first(db, project, "t.ifc_class = 'IfcDoor'")
    gone_slab = _first(db, project, "t.ifc_class = 'IfcSlab'")
    placement.place_device(
        db, DevicePlacementIn(project_id=project, device_id="cam-keep", target_id=kept_space)
    )
    placement.place_device(
        db, DevicePlacementIn(project_id=project, device_id="cam-gone", target_id=gone_door)
    )
    placement.place_zone(db, ZoneIn(project_id=project, zone="pit", target_id=gone_slab))
    placement.place_zone(
        db,
        ZoneIn(project_id=project, zone="crane", center=Point(x=0, y=0, z=0), radius=30),
    )
    placement.link_camera_zone(
        db, CameraZoneIn(project_id=project, device_id="cam-zone", image_zone="z1", zone="pit")
    )
    before = placement.resolve(db, project, "cam-gone")
    assert before.status == "resolved" and before.element is not None

    v2 = store.import_model(db, project, _new_version(src, tmp_path, [gone_door, gone_slab]))
    assert v2.model.version == 2 and not v2.unchanged
    assert {(p.kind, p.device_id or p.zone) for p in v2.stale} == {
        ("device", "cam-gone"),
        ("zone", "pit"),
        ("camera_zone", "cam-zone"),
    }
    assert {(p.kind, p.device_id or p.zone) for p in v2.kept} == {
        ("device", "cam-keep"),
        ("zone", "crane"),
    }
    assert gone_door in next(p.reason for p in v2.stale if p.device_id == "cam-gone")
    # the kept one resolves in version 2, the stale one still says where it was in version 1
    keep = placement.resolve(db, project, "cam-keep")
    assert (keep.status, keep.model_version, keep.space.global_id) == (  # type: ignore[union-attr]
        "resolved",
        2,
        kept_space,
    )
    gone = placement.resolve(db, project, "cam-gone")
    assert (gone.status, gone.model_version) == ("stale", 1)
    assert gone.element == before.element and gone.storey == before.storey
    assert "not in the current version 2" in gone.note
    assert placement.resolve(db, project, "cam-zone", "z1").status == "stale"
    listed = {p.device_id or p.zone: p for p in placement.list_placements(db, project)}
    assert listed["cam-gone"].status == "stale" and listed["cam-gone"].stale_since_version == 2
    assert listed["cam-keep"].resolved_version == 2

    # the old file again (version 3): the GlobalIds are back, so are the placements
    v3 = store.import_model(db, project, src)
    assert v3.model.version == 3 and v3.stale == []
    assert placement.resolve(db, project, "cam-gone").status == "resolved"
    assert placement.resolve(db, project, "cam-zone", "z1").status == "resolved"
    assert count(db, "SELECT count(*) FROM bim_models WHERE project_id = %s", project) == 3


# ---------------------------------------------------------------- placements and resolution


@pytest.fixture
def duplex(db: psycopg.Connection, project: str) -> psycopg.Connection:
    store.import_model(db, project, model("duplex.ifc"))
    _devices(db, project, "cam-1", "cam-2", "cam-3")
    _devices(db, project, "noise-1", kind="noise")
    return db


def _space(db: psycopg.Connection, project: str, name: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT n.global_id, n.footprint, n.z_min, n.z_max, s.name FROM bim_nodes n "
        "JOIN bim_models m ON m.id = n.model_id JOIN bim_nodes s ON s.model_id = n.model_id "
        "AND s.global_id = n.storey_id WHERE m.project_id = %s AND n.kind = 'space' "
        "AND n.name = %s",
        (project, name),
    ).fetchone()
    assert row is not None
    return dict(zip(("global_id", "footprint", "z_min", "z_max", "storey"), row, strict=True))


@needs_models
def test_a_device_at_a_space_resolves_to_building_storey_space(
    duplex: psycopg.Connection, project: str
) -> None:
    a102 = _space(duplex, project, "A102")
    placement.place_device(
        duplex,
        DevicePlacementIn(project_id=project, device_id="cam-1", target_id=a102["global_id"]),
    )
    ctx = placement.resolve(duplex, project, "cam-1")
    assert (ctx.status, ctx.via, ctx.model_version) == ("resolved", "device", 1)
    assert ctx.space is not None and ctx.space.name == "A102" and ctx.space.ifc_class == "IfcSpace"
    assert ctx.storey is not None and ctx.storey.name == a102["storey"] == "Level 1"
    assert ctx.building is not None and ctx.building.ifc_class == "IfcBuilding"
    assert ctx.element is None


@needs_models
def test_a_device_at_an_element_resolves_to_the_element_and_its_storey(
    duplex: psycopg.Connection, project: str
) -> None:
    row = duplex.execute(
        "SELECT e.global_id, e.name, s.name FROM bim_elements e JOIN bim_nodes s "
        "ON s.model_id = e.model_id AND s.global_id = e.storey_id "
        "WHERE e.ifc_class = 'IfcWindow' ORDER BY e.global_id LIMIT 1"
    ).fetchone()
    assert row is not None
    placement.place_device(
        duplex, DevicePlacementIn(project_id=project, device_id="cam-1", target_id=row[0])
    )
    ctx = placement.resolve(duplex, project, "cam-1")
    assert ctx.element is not None and (ctx.element.global_id, ctx.element.name) == row[:2]
    assert ctx.element.ifc_class == "IfcWindow"
    assert ctx.storey is not None and ctx.storey.name == row[2]


@needs_models
def test_a_device_at_a_point_resolves_to_the_space_around_it(
    duplex: psycopg.Connection, project: str
) -> None:
    import shapely

    a102 = _space(duplex, project, "A102")
    inside = shapely.geometry.shape(a102["footprint"]).representative_point()
    z = a102["z_min"] + 1.5
    placement.place_device(
        duplex,
        DevicePlacementIn(
            project_id=project, device_id="cam-1", point=Point(x=inside.x, y=inside.y, z=z)
        ),
    )
    ctx = placement.resolve(duplex, project, "cam-1")
    assert ctx.space is not None and ctx.space.global_id == a102["global_id"]
    assert ctx.storey is not None and ctx.storey.name == "Level 1"
    assert ctx.point == Point(x=inside.x, y=inside.y, z=z)
    # the same x/y one storey up is another storey, and not that space
    placement.place_device(
        duplex,
        DevicePlacementIn(
            project_id=project, device_id="cam-2", point=Point(x=inside.x, y=inside.y, z=z + 3.1)
        ),
    )
    up = placement.resolve(duplex, project, "cam-2")
    assert up.storey is not None and up.storey.name == "Level 2"
    assert up.space is None or up.space.global_id != a102["global_id"]
    # far outside the building: the storey by height, no space
    placement.place_device(
        duplex,
        DevicePlacementIn(project_id=project, device_id="cam-3", point=Point(x=500, y=500, z=7)),
    )
    far = placement.resolve(duplex, project, "cam-3")
    assert far.space is None and far.storey is not None and far.storey.name == "Roof"


@needs_models
def test_zones_and_camera_image_zones_resolve(duplex: psycopg.Connection, project: str) -> None:
    import shapely

    slab = duplex.execute(
        "SELECT global_id, name FROM bim_elements WHERE ifc_class = 'IfcSlab' "
        "AND storey_id IS NOT NULL ORDER BY global_id LIMIT 1"
    ).fetchone()
    assert slab is not None
    a102 = _space(duplex, project, "A102")
    placement.place_zone(duplex, ZoneIn(project_id=project, zone="slab-edge", target_id=slab[0]))
    placement.place_zone(
        duplex, ZoneIn(project_id=project, zone="room", target_id=a102["global_id"], danger=False)
    )
    placement.place_zone(
        duplex, ZoneIn(project_id=project, zone="crane", center=Point(x=1, y=2, z=0), radius=25)
    )
    placement.link_camera_zone(
        duplex,
        CameraZoneIn(project_id=project, device_id="cam-1", image_zone="edge-1", zone="slab-edge"),
    )
    placement.place_device(
        duplex,
        DevicePlacementIn(project_id=project, device_id="cam-1", target_id=a102["global_id"]),
    )
    zones = {p.zone: p for p in placement.list_placements(duplex, project) if p.kind == "zone"}
    # an element's footprint from its geometry, a space's from the import, a circle
    edge = shapely.geometry.shape(zones["slab-edge"].footprint)
    assert edge.area > 1 and zones["slab-edge"].z_max > zones["slab-edge"].z_min  # type: ignore[operator]
    room = shapely.geometry.shape(zones["room"].footprint)
    assert room.equals_exact(shapely.geometry.shape(a102["footprint"]), 1e-6)
    crane = shapely.geometry.shape(zones["crane"].footprint)
    assert crane.area == pytest.approx(3.14159 * 25**2, rel=0.01)

    via_camera = placement.resolve(duplex, project, "cam-1", "edge-1")
    assert (via_camera.via, via_camera.zone, via_camera.danger) == (
        "camera_zone",
        "slab-edge",
        True,
    )
    assert via_camera.element is not None and via_camera.element.global_id == slab[0]
    by_name = placement.resolve(duplex, project, "cam-2", "room")
    assert (by_name.via, by_name.danger) == ("zone", False)
    assert by_name.space is not None and by_name.space.name == "A102"
    circle = placement.resolve(duplex, project, "noise-1", "crane")
    assert circle.via == "zone" and circle.point == Point(x=1, y=2, z=0)
    # an image zone the model does not know: the device's own placement, with a note
    unknown = placement.resolve(duplex, project, "cam-1", "gate")
    assert unknown.via == "device" and unknown.space is not None and "gate" in unknown.note
    assert placement.resolve(duplex, project, "cam-3").status == "unplaced"
    assert placement.resolve(duplex, project, "cam-3", "gate").status == "unplaced"


def test_a_project_without_a_model_resolves_to_no_model(
    db: psycopg.Connection, project: str
) -> None:
    _devices(db, project, "cam-1")
    ctx = placement.resolve(db, project, "cam-1", "z1")
    assert (ctx.status, ctx.building, ctx.zone) == ("no_model", None, "z1")


@needs_models
def test_placements_that_name_nothing_are_refused(duplex: psycopg.Connection, project: str) -> None:
    upsert_project(duplex, ProjectIn(id="P-OTHER", name="other"))
    upsert_device(duplex, DeviceIn(id="cam-other", project_id="P-OTHER", kind="camera"))
    with pytest.raises(PlacementError, match="neither a spatial node nor an element"):
        placement.place_device(
            duplex, DevicePlacementIn(project_id=project, device_id="cam-1", target_id="0" * 22)
        )
    with pytest.raises(PlacementError, match="belongs to project 'P-OTHER'"):
        placement.place_device(
            duplex,
            DevicePlacementIn(
                project_id=project, device_id="cam-other", point=Point(x=0, y=0, z=0)
            ),
        )
    with pytest.raises(PlacementError, match="not registered"):
        placement.place_device(
            duplex,
            DevicePlacementIn(project_id=project, device_id="nope", point=Point(x=0, y=0, z=0)),
        )
    with pytest.raises(PlacementError, match="has no zone 'pit'"):
        placement.link_camera_zone(
            duplex, CameraZoneIn(project_id=project, device_id="cam-1", image_zone="a", zone="pit")
        )
    placement.place_zone(
        duplex, ZoneIn(project_id=project, zone="pit", center=Point(x=0, y=0, z=0), radius=3)
    )
    with pytest.raises(PlacementError, match="not a camera"):
        placement.link_camera_zone(
            duplex,
            CameraZoneIn(project_id=project, device_id="noise-1", image_zone="a", zone="pit"),
        )
    with pytest.raises(ValidationError, match="exactly one"):
        DevicePlacementIn(
            project_id=project, device_id="cam-1", target_id="x", point=Point(x=0, y=0, z=0)
        )
    with pytest.raises(ValidationError, match="exactly one"):
        ZoneIn(project_id=project, zone="z", center=Point(x=0, y=0, z=0))
    assert count(duplex, "SELECT count(*) FROM bim_placements") == 1


@needs_models
def test_moving_a_device_replaces_its_placement(duplex: psycopg.Connection, project: str) -> None:
    a102 = _space(duplex, project, "A102")
    first = placement.place_device(
        duplex,
        DevicePlacementIn(project_id=project, device_id="cam-1", target_id=a102["global_id"]),
    )
    again = placement.place_device(
        duplex, DevicePlacementIn(project_id=project, device_id="cam-1", point=Point(x=0, y=0, z=4))
    )
    assert first == again
    assert count(duplex, "SELECT count(*) FROM bim_placements") == 1
    assert placement.remove_placement(duplex, project, first)
    assert placement.resolve(duplex, project, "cam-1").status == "unplaced"


# ---------------------------------------------------------------- geometry


def _glb_nodes(path: Path) -> list[str]:
    """Node names from a GLB's JSON chunk (the binary layout is fixed by glTF 2.0)."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunk_len, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    doc = json.loads(data[20 : 20 + chunk_len])
    return [n.get("name", "") for n in doc.get("nodes", [])]


def _glb_case(db: psycopg.Connection, project: str, name: str, tmp_path: Path) -> None:
    m = store.import_model(db, project, model(name)).model
    cache = GlbCache(tmp_path / "cache")
    manifest = store.manifest(db, cache, project)
    assert manifest.sha256 == m.sha256
    assert (cache.root / m.sha256 / "manifest.json").exists()
    storeys = [s for s in manifest.storeys if s.id != OUTSIDE]
    assert len(storeys) == m.counts["storeys"]
    # the smallest storey keeps the test fast on every schema
    s = min(storeys, key=lambda s: len(s.products))
    path = store.storey_glb(db, cache, project, s.id)
    assert path.parent == cache.root / m.sha256
    names = set(_glb_nodes(path))
    shown = {p.global_id for p in s.products}
    assert names and names == shown, "every product of the storey is a node named by GlobalId"
    walls = {
        g
        for (g,) in db.execute(
            "SELECT global_id FROM bim_elements WHERE model_id = %s AND storey_id = %s "
            "AND ifc_class LIKE 'IfcWall%%'",
            (m.id, s.id),
        )
    }
    assert walls <= names, "every wall of the storey is a named node"
    mtime = path.stat().st_mtime_ns
    assert store.storey_glb(db, cache, project, s.id) == path
    assert path.stat().st_mtime_ns == mtime, "the second request is served from the cache"


@needs_models
@pytest.mark.parametrize(
    "name", ["IfcOpenHouse_IFC4.ifc", "construction-scheduling-task.ifc", "House.ifc"]
)
def test_storey_glb_has_nodes_named_by_global_id(
    db: psycopg.Connection, project: str, name: str, tmp_path: Path
) -> None:
    _glb_case(db, project, name, tmp_path)


@needs_models
def test_storey_glb_shows_spaces_for_highlighting(
    db: psycopg.Connection, project: str, tmp_path: Path
) -> None:
    store.import_model(db, project, model("House.ifc"))
    cache = GlbCache(tmp_path / "cache")
    manifest = store.manifest(db, cache, project)
    with_spaces = [
        s for s in manifest.storeys if any(p.ifc_class == "IfcSpace" for p in s.products)
    ]
    s = min(with_spaces, key=lambda s: len(s.products))
    names = set(_glb_nodes(store.storey_glb(db, cache, project, s.id)))
    assert {p.global_id for p in s.products if p.ifc_class == "IfcSpace"} <= names


@needs_models
def test_an_unknown_storey_is_a_clear_error(
    db: psycopg.Connection, project: str, tmp_path: Path
) -> None:
    store.import_model(db, project, model("IfcOpenHouse_IFC4.ifc"))
    with pytest.raises(store.BimError, match="has no storey 'nope'"):
        store.storey_glb(db, GlbCache(tmp_path), project, "nope")


@needs_models
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FACTS))
def test_every_storey_of_every_model_exports(
    db: psycopg.Connection, project: str, name: str, tmp_path: Path
) -> None:
    m = store.import_model(db, project, model(name)).model
    cache = GlbCache(tmp_path / "cache")
    for s in store.manifest(db, cache, project).storeys:
        names = set(_glb_nodes(store.storey_glb(db, cache, project, s.id)))
        # everything the manifest lists is in the file (House.ifc's '*' names included)
        assert names == {p.global_id for p in s.products}, s.name
    assert len(list((cache.root / m.sha256).glob("*.glb"))) >= m.counts["storeys"]


# ---------------------------------------------------------------- bad input


def _no_storeys(tmp_path: Path) -> Path:
    import ifcopenshell.api

    f = ifcopenshell.api.run("project.create_file", version="IFC4")
    proj = ifcopenshell.api.run("root.create_entity", f, ifc_class="IfcProject", name="P")
    ifcopenshell.api.run("unit.assign_unit", f)
    site = ifcopenshell.api.run("root.create_entity", f, ifc_class="IfcSite", name="S")
    building = ifcopenshell.api.run("root.create_entity", f, ifc_class="IfcBuilding", name="B")
    ifcopenshell.api.run("aggregate.assign_object", f, products=[site], relating_object=proj)
    ifcopenshell.api.run("aggregate.assign_object", f, products=[building], relating_object=site)
    wall = ifcopenshell.api.run("root.create_entity", f, ifc_class="IfcWall", name="W")
    ifcopenshell.api.run(
        "spatial.assign_container", f, products=[wall], relating_structure=building
    )
    out = tmp_path / "no-storeys.ifc"
    f.write(str(out))
    return out


def _bad(kind: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{kind}.ifc"
    if kind == "no_storeys":
        return _no_storeys(tmp_path)
    if kind == "empty":
        out.write_bytes(b"")
        return out
    if kind == "not_ifc":
        out.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
        return out
    if kind == "ifczip":
        out.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
        return out
    good = model("IfcOpenHouse_IFC4.ifc").read_bytes()
    if kind == "truncated":
        out.write_bytes(good[: len(good) // 2])
    elif kind == "corrupt":
        # a damaged record in the middle: ifcopenshell alone would open the rest silently
        lines = good.split(b"\n")
        mid = len(lines) // 2
        lines[mid] = lines[mid][: len(lines[mid]) // 2]
        out.write_bytes(b"\n".join(lines))
    elif kind == "dangling":
        # a reference to an instance that is not in the file
        out.write_bytes(
            good.replace(b"#10=IFCAXIS2PLACEMENT3D(#9,", b"#10=IFCAXIS2PLACEMENT3D(#99999,")
        )
    elif kind == "schema_ifc2x2":
        out.write_bytes(good.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC2X2_FINAL'))"))
    elif kind == "schema_ifc5":
        out.write_bytes(good.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC5'))"))
    return out


BAD = [
    ("empty", EmptyFileError, "empty (0 bytes)"),
    ("truncated", TruncatedFileError, "cut short"),
    ("corrupt", CorruptFileError, "damaged"),
    ("dangling", CorruptFileError, "damaged"),
    ("schema_ifc2x2", UnsupportedSchemaError, "'IFC2X2_FINAL' is not supported"),
    ("schema_ifc5", UnsupportedSchemaError, "'IFC5' is not supported"),
    ("not_ifc", NotIfcError, "not an IFC file"),
    ("ifczip", NotIfcError, "unzip"),
    ("no_storeys", NoStoreysError, "no building storey"),
]


@pytest.mark.parametrize(("kind", "error", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error_and_stores_nothing(
    db: psycopg.Connection,
    project: str,
    tmp_path: Path,
    kind: str,
    error: type[BimImportError],
    message: str,
) -> None:
    path = _bad(kind, tmp_path)
    with pytest.raises(error, match=re.escape(message)) as err:
        store.import_model(db, project, path)
    assert path.name in str(err.value), "the message names the file"
    # the same from bytes (an upload), named as uploaded
    with pytest.raises(error):
        store.import_model(db, project, path.read_bytes(), file_name="upload.ifc")
    for table in ("bim_models", "bim_nodes", "bim_elements", "bim_tasks"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0, table


@needs_models
def test_a_failure_while_storing_leaves_nothing_half_stored(
    db: psycopg.Connection, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("bim.placement.recheck_placements", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        store.import_model(db, project, model("duplex.ifc"))
    for table in ("bim_models", "bim_nodes", "bim_elements", "bim_tasks"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0, table


@needs_models
def test_an_unregistered_project_is_refused_unless_asked_to_create(db: psycopg.Connection) -> None:
    with pytest.raises(store.UnknownProjectError, match="not registered"):
        store.import_model(db, "P-NEW", model("IfcOpenHouse_IFC4.ifc"))
    report = store.import_model(db, "P-NEW", model("IfcOpenHouse_IFC4.ifc"), create_project=True)
    assert report.model.version == 1
    assert db.execute("SELECT name FROM projects WHERE id = 'P-NEW'").fetchone() is not None


# ---------------------------------------------------------------- CLI and bench


@pytest.fixture
def cli_env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SMARTSITE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@needs_models
def test_cli_imports_and_prints_the_tree(
    db: psycopg.Connection, project: str, cli_env: None, tmp_path: Path
) -> None:
    runner = CliRunner()
    path = model("construction-scheduling-task.ifc")
    r = runner.invoke(app, ["bim", "import", str(path), "--project", project])
    assert r.exit_code == 0, r.output
    assert "version 1" in r.output and "8 tasks" in r.output
    r = runner.invoke(app, ["bim", "import", str(path), "--project", project])
    assert r.exit_code == 0 and "unchanged" in r.output
    r = runner.invoke(app, ["bim", "tree", "--project", project])
    assert r.exit_code == 0, r.output
    for text in ("Ground Level", "IfcBuildingStorey", "IfcWall 4", "Wall #4", "2010-09-24"):
        assert text in r.output
    r = runner.invoke(app, ["bim", "tree", "--project", project, "--json"])
    assert json.loads(r.output)["model"]["version"] == 1
    r = runner.invoke(app, ["bim", "glb", "--project", project, "--out", str(tmp_path / "glb")])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "glb").glob("*.glb"))) == 1


def test_cli_reports_a_bad_file_and_fails(
    db: psycopg.Connection, project: str, cli_env: None, tmp_path: Path
) -> None:
    empty = tmp_path / "site.ifc"
    empty.write_bytes(b"")
    r = CliRunner().invoke(app, ["bim", "import", str(empty), "--project", project])
    assert r.exit_code == 1
    assert "site.ifc: the file is empty" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["bim", "tree", "--project", project])
    assert r.exit_code == 1 and "has no a BIM model" not in r.output
    assert "import one first" in " ".join(r.output.split())


@needs_models
def test_bench_prints_figures_and_a_json_last_line(pg_url: str, cli_env: None) -> None:
    r = CliRunner().invoke(app, ["bench", "bim", "--model", str(model("IfcOpenHouse_IFC4.ifc"))])
    assert r.exit_code == 0, r.output
    last = json.loads(r.output.strip().splitlines()[-1])
    assert last["bench"] == "bim"
    (row,) = last["models"]
    assert row["model"] == "IfcOpenHouse_IFC4.ifc" and row["products"] == 47
    assert row["import_s"] > 0 and row["limit_s"] > 0 and row["import_peak_mb"] > 0
    assert [s["products"] for s in row["storeys"]] and all(s["bytes"] > 0 for s in row["storeys"])


@needs_models
def test_cli_places_devices_and_zones_and_resolves_them(
    duplex: psycopg.Connection, project: str, cli_env: None
) -> None:
    """What an officer does from the shell: place a camera, define a zone, link, resolve."""
    runner = CliRunner()
    a102 = _space(duplex, project, "A102")
    r = runner.invoke(
        app, ["bim", "place-device", "cam-1", "--project", project, "--target", a102["global_id"]]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["bim", "place-zone", "pit", "--project", project, "--target", a102["global_id"]]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["bim", "link-camera-zone", "cam-2", "edge-pit", "pit", "--project", project]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bim", "placements", "--project", project])
    assert r.exit_code == 0 and r.output.count("resolved") == 3, r.output
    r = runner.invoke(
        app, ["bim", "resolve", "--project", project, "--device", "cam-2", "--zone", "edge-pit"]
    )
    ctx = json.loads(r.output)
    assert (ctx["status"], ctx["via"], ctx["zone"]) == ("resolved", "camera_zone", "pit")
    assert ctx["space"]["name"] == "A102" and ctx["storey"]["name"] == "Level 1"
    # bad input: a point that is not x,y,z, and both a target and a point
    r = runner.invoke(app, ["bim", "place-device", "cam-3", "--project", project, "--point", "1,2"])
    assert r.exit_code == 2 and "x,y,z" in r.output
    r = runner.invoke(
        app,
        [
            "bim",
            "place-device",
            "cam-3",
            "--project",
            project,
            "--target",
            a102["global_id"],
            "--point",
            "1,2,3",
        ],
    )
    assert r.exit_code == 2 and "exactly one of" in r.output
