"""BIM models in the database: import a version in one transaction, read the tree back, serve
geometry from the stored source."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import ifcopenshell
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bim import geometry
from bim.errors import BimError, NoModelError
from bim.ifc_import import ParsedModel, open_bytes, read_ifc
from bim.models import ImportReport, ModelInfo, ModelTree, TaskOut, TreeNode
from smartsite.settings import Settings

_MODEL_COLS = (
    "id, project_id, version, sha256, file_name, file_size, schema AS schema_name, application, "
    "counts, imported_at"
)


class UnknownProjectError(BimError):
    def __init__(self, project_id: str) -> None:
        super().__init__(
            f"project {project_id!r} is not registered; register it first "
            "(or import with --create-project)"
        )


def _model(row: dict[str, Any]) -> ModelInfo:
    return ModelInfo(**row)


def get_model(conn: psycopg.Connection, project_id: str, version: int | None = None) -> ModelInfo:
    """The project's model version (the latest when ``version`` is None)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if version is None:
            cur.execute(
                f"SELECT {_MODEL_COLS} FROM bim_models WHERE project_id = %s "
                "ORDER BY version DESC LIMIT 1",
                (project_id,),
            )
        else:
            cur.execute(
                f"SELECT {_MODEL_COLS} FROM bim_models WHERE project_id = %s AND version = %s",
                (project_id, version),
            )
        row = cur.fetchone()
    if row is None:
        what = "BIM model" if version is None else f"BIM model version {version}"
        raise NoModelError(f"project {project_id!r} has no {what}; import one first")
    return _model(row)


def _current(conn: psycopg.Connection, project_id: str) -> ModelInfo | None:
    try:
        return get_model(conn, project_id)
    except NoModelError:
        return None


def model_by_id(conn: psycopg.Connection, model_id: int) -> ModelInfo:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_MODEL_COLS} FROM bim_models WHERE id = %s", (model_id,))
        row = cur.fetchone()
    if row is None:
        raise NoModelError(f"no BIM model with id {model_id}")
    return _model(row)


def import_model(
    conn: psycopg.Connection,
    project_id: str,
    source: Path | bytes,
    *,
    file_name: str | None = None,
    create_project: bool = False,
    outlines: bool = True,
) -> ImportReport:
    """Import an IFC file as the project's next model version.

    The file is checked and parsed before the transaction opens (the slow part holds no
    lock); everything is then written in one transaction, so a failure stores nothing. The
    same file as the current version is a no-op (``unchanged``). Placements are re-checked
    against the new version in the same transaction. ``outlines``: compute space outlines
    (needed to place a point in a space); off only to measure the import without geometry.
    """
    t0 = time.perf_counter()
    data = source.read_bytes() if isinstance(source, Path) else source
    current = _current(conn, project_id)
    if current is not None and data and current.sha256 == hashlib.sha256(data).hexdigest():
        # the current version again: no need to parse it
        return ImportReport(
            model=current, unchanged=True, kept=[], stale=[], seconds=time.perf_counter() - t0
        )
    parsed = read_ifc(source, file_name, data=data)
    t1 = time.perf_counter()
    space_outlines = (
        geometry.outlines(parsed.ifc, parsed.ifc.by_type("IfcSpace")) if outlines else {}
    )
    t2 = time.perf_counter()
    for node in parsed.nodes:
        o = space_outlines.get(node.global_id)
        if o is not None:
            node.footprint, node.z_min, node.z_max = o.footprint, o.z_min, o.z_max
    from bim.placement import recheck_placements  # placement builds on this module

    with conn.transaction():
        _lock_project(conn, project_id, parsed, create_project)
        current = conn.execute(
            "SELECT id, sha256 FROM bim_models WHERE project_id = %s ORDER BY version DESC LIMIT 1",
            (project_id,),
        ).fetchone()
        if current is not None and current[1] == parsed.sha256:
            return ImportReport(
                model=model_by_id(conn, current[0]),
                unchanged=True,
                kept=[],
                stale=[],
                seconds=time.perf_counter() - t0,
            )
        model_id = _insert(conn, project_id, parsed)
        kept, stale = recheck_placements(conn, project_id, model_id, parsed.ifc)
        model = model_by_id(conn, model_id)
    t3 = time.perf_counter()
    return ImportReport(
        model=model,
        unchanged=False,
        kept=kept,
        stale=stale,
        seconds=t3 - t0,
        phases={"parse": t1 - t0, "outlines": t2 - t1, "store": t3 - t2},
    )


def _lock_project(
    conn: psycopg.Connection, project_id: str, parsed: ParsedModel, create: bool
) -> None:
    # The row lock serialises imports of one project, so versions number without gaps.
    row = conn.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (project_id,)).fetchone()
    if row is not None:
        return
    if not create:
        raise UnknownProjectError(project_id)
    names = [n.name for n in parsed.nodes if n.kind == "project" and n.name]
    conn.execute(
        "INSERT INTO projects (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
        (project_id, names[0] if names else project_id),
    )
    conn.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (project_id,))


def _insert(conn: psycopg.Connection, project_id: str, m: ParsedModel) -> int:
    row = conn.execute(
        "INSERT INTO bim_models (project_id, version, sha256, file_name, file_size, schema, "
        "application, length_unit_m, counts, source) VALUES (%s, "
        "(SELECT coalesce(max(version), 0) + 1 FROM bim_models WHERE project_id = %s), "
        "%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            project_id,
            project_id,
            m.sha256,
            m.file_name,
            len(m.data),
            m.schema,
            m.application,
            m.length_unit_m,
            Jsonb(m.counts()),
            m.data,
        ),
    ).fetchone()
    assert row is not None
    model_id = int(row[0])
    with conn.cursor() as cur:
        with cur.copy(
            "COPY bim_nodes (model_id, global_id, parent_id, kind, ifc_class, name, long_name, "
            "building_id, storey_id, position, elevation, footprint, z_min, z_max) FROM STDIN"
        ) as copy:
            copy.set_types(["int8"] + ["text"] * 8 + ["int4", "float8", "jsonb"] + ["float8"] * 2)
            for n in m.nodes:
                copy.write_row(
                    (
                        model_id,
                        n.global_id,
                        n.parent_id,
                        n.kind,
                        n.ifc_class,
                        n.name,
                        n.long_name,
                        n.building_id,
                        n.storey_id,
                        n.position,
                        n.elevation,
                        Jsonb(n.footprint) if n.footprint is not None else None,
                        n.z_min,
                        n.z_max,
                    )
                )
        with cur.copy(
            "COPY bim_elements (model_id, global_id, ifc_class, name, object_type, tag, "
            "container_id, building_id, storey_id, space_id, quantities) FROM STDIN"
        ) as copy:
            copy.set_types(["int8"] + ["text"] * 9 + ["jsonb"])
            for e in m.elements:
                copy.write_row(
                    (
                        model_id,
                        e.global_id,
                        e.ifc_class,
                        e.name,
                        e.object_type,
                        e.tag,
                        e.container_id,
                        e.building_id,
                        e.storey_id,
                        e.space_id,
                        Jsonb(e.quantities),
                    )
                )
        with cur.copy(
            "COPY bim_tasks (model_id, global_id, parent_id, schedule_id, schedule_name, "
            "identification, name, is_milestone, predefined_type, schedule_start, "
            "schedule_finish, schedule_duration, predecessors, products, position) FROM STDIN"
        ) as copy:
            copy.set_types(
                ["int8"]
                + ["text"] * 6
                + ["bool", "text", "timestamp", "timestamp", "text"]
                + ["text[]", "text[]", "int4"]
            )
            for t in m.tasks:
                copy.write_row(
                    (
                        model_id,
                        t.global_id,
                        t.parent_id,
                        t.schedule_id,
                        t.schedule_name,
                        t.identification,
                        t.name,
                        t.is_milestone,
                        t.predefined_type,
                        t.schedule_start,
                        t.schedule_finish,
                        t.schedule_duration,
                        t.predecessors,
                        t.products,
                        t.position,
                    )
                )
    return model_id


def tree(conn: psycopg.Connection, project_id: str, version: int | None = None) -> ModelTree:
    """The spatial tree of a model version with element counts per node, and its tasks."""
    model = get_model(conn, project_id, version)
    counts: dict[str | None, Counter[str]] = {}
    for container, cls, n in conn.execute(
        "SELECT container_id, ifc_class, count(*) FROM bim_elements WHERE model_id = %s "
        "GROUP BY 1, 2",
        (model.id,),
    ):
        counts.setdefault(container, Counter())[cls] = n
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT global_id, parent_id, kind, ifc_class, name, long_name, elevation "
            "FROM bim_nodes WHERE model_id = %s ORDER BY position, global_id",
            (model.id,),
        )
        rows = cur.fetchall()
    children: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        children.setdefault(r["parent_id"], []).append(r)
    known = {r["global_id"] for r in rows}

    def build(r: dict[str, Any]) -> TreeNode:
        gid = r.pop("global_id")
        r.pop("parent_id")
        return TreeNode(
            global_id=gid,
            elements=dict(sorted(counts.get(gid, Counter()).items())),
            children=[build(c) for c in children.get(gid, [])],
            **r,
        )

    unplaced: Counter[str] = Counter()
    for container, c in counts.items():
        if container is None or container not in known:
            unplaced.update(c)
    return ModelTree(
        model=model,
        roots=[build(r) for r in children.get(None, [])],
        unplaced_elements=dict(sorted(unplaced.items())),
        tasks=tasks(conn, model.id),
    )


def tasks(conn: psycopg.Connection, model_id: int) -> list[TaskOut]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT global_id, parent_id, schedule_id, schedule_name, identification, name, "
            "is_milestone, predefined_type, schedule_start, schedule_finish, schedule_duration, "
            "predecessors, products FROM bim_tasks WHERE model_id = %s ORDER BY position",
            (model_id,),
        )
        return [TaskOut(**r) for r in cur.fetchall()]


# Parsed sources by sha256: placing zones and making geometry reopen the same file often.
_OPEN: OrderedDict[str, ifcopenshell.file] = OrderedDict()
_OPEN_MAX = 2
_OPEN_LOCK = threading.Lock()


def load_ifc(conn: psycopg.Connection, model_id: int) -> ifcopenshell.file:
    """The model version's IFC file, opened (kept for the next caller while it is recent)."""
    row = conn.execute("SELECT sha256 FROM bim_models WHERE id = %s", (model_id,)).fetchone()
    if row is None:
        raise NoModelError(f"no BIM model with id {model_id}")
    sha = row[0]
    with _OPEN_LOCK:
        if sha in _OPEN:
            _OPEN.move_to_end(sha)
            return _OPEN[sha]
    src = conn.execute("SELECT source, file_name FROM bim_models WHERE id = %s", (model_id,))
    data, name = src.fetchone()  # type: ignore[misc]
    ifc = open_bytes(bytes(data), name)
    with _OPEN_LOCK:
        _OPEN[sha] = ifc
        while len(_OPEN) > _OPEN_MAX:
            _OPEN.popitem(last=False)
    return ifc


def glb_cache(settings: Settings) -> geometry.GlbCache:
    """The GLB cache the settings name (``SMARTSITE_BIM_CACHE_DIR``, else <home>/bim-cache)."""
    return geometry.GlbCache(settings.bim_cache_dir or settings.home / "bim-cache")


def manifest(
    conn: psycopg.Connection,
    cache: geometry.GlbCache,
    project_id: str,
    version: int | None = None,
) -> geometry.Manifest:
    """Which storey GLB holds which GlobalId (what a viewer loads first)."""
    model = get_model(conn, project_id, version)
    return cache.manifest(model.sha256, lambda: load_ifc(conn, model.id))


def storey_glb(
    conn: psycopg.Connection,
    cache: geometry.GlbCache,
    project_id: str,
    storey_id: str,
    version: int | None = None,
) -> Path:
    """The GLB of one storey (or ``geometry.OUTSIDE``), made on first request, then cached."""
    model = get_model(conn, project_id, version)
    try:
        path, _ = cache.storey(model.sha256, storey_id, lambda: load_ifc(conn, model.id))
    except KeyError:
        raise BimError(
            f"model version {model.version} of {project_id!r} has no storey {storey_id!r}"
        ) from None
    return path
