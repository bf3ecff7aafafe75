"""Geometry with ifcopenshell.geom: outlines of spaces and zones, and GLB files per storey.

Coordinates are the model's world frame in metres, z up (ifcopenshell converts the project's
length unit). The GLB files are glTF's y-up view of the same frame: glTF (x, y, z) = model
(x, z, -y). Nodes are named by GlobalId (the wheel's own glTF serializer,
``use-element-guids``), so a viewer finds the element or space of an alert by name; the
manifest beside the files says which storey file holds which GlobalId.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import numpy as np
import shapely
from pydantic import BaseModel, Field

from bim.ifc_import import element_containers, spatial_tree

OUTSIDE = "outside"  # bucket of products that no storey contains (site works, loose parts)
MANIFEST = "manifest.json"
# Voids and helpers have no surface of their own to show.
_NOT_SHOWN = ("IfcOpeningElement", "IfcVirtualElement", "IfcFeatureElementSubtraction")
_THREADS = max(1, min(2, os.cpu_count() or 1))


def _settings(*, glb: bool) -> ifcopenshell.geom.settings:
    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    if glb:
        s.set("use-element-guids", True)
        s.set("y-up", True)
    return s


def _shapes(
    settings: ifcopenshell.geom.settings,
    ifc: ifcopenshell.file,
    products: Sequence[ifcopenshell.entity_instance],
    threads: int = _THREADS,
) -> Iterator[Any]:
    if not products:
        return
    for p in products:
        # Some exporters write '*' (derived) for a product's Name, which the schema forbids;
        # ifcopenshell.geom then drops the product ("does not match actual type <derived>").
        # Python reads it as None; writing None back makes it '$' in this in-memory copy only.
        if p.Name is None:
            p.Name = None
    it = ifcopenshell.geom.iterator(settings, ifc, threads, include=list(products))
    if not it.initialize():  # nothing among them has a body representation
        return
    while True:
        yield it.get()
        if not it.next():
            break


@dataclass(frozen=True)
class Outline:
    """What a product covers seen from above: a GeoJSON (Multi)Polygon and its z range."""

    footprint: dict[str, Any]
    z_min: float
    z_max: float


def outline_of(verts: Sequence[float], faces: Sequence[int]) -> Outline | None:
    """Union of the mesh's triangles projected on the xy plane (vertical ones have no area)."""
    v = np.asarray(verts, dtype=float).reshape(-1, 3)
    tri = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(tri) == 0:
        return None
    xy = v[tri][:, :, :2]
    a, b, c = xy[:, 0], xy[:, 1], xy[:, 2]
    area = np.abs(
        (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    )
    xy = xy[area > 1e-8]
    if len(xy) == 0:
        return None
    # a hair of buffer closes the slivers between triangles that share an edge in floats
    shape = shapely.union_all(shapely.polygons(xy)).buffer(1e-4).simplify(0.005)
    if shape.is_empty:
        return None
    footprint = json.loads(json.dumps(shapely.geometry.mapping(shapely.set_precision(shape, 1e-3))))
    return Outline(footprint=footprint, z_min=float(v[:, 2].min()), z_max=float(v[:, 2].max()))


def outlines(
    ifc: ifcopenshell.file, products: Sequence[ifcopenshell.entity_instance]
) -> dict[str, Outline]:
    """GlobalId → outline for each product that has a body to tessellate."""
    out: dict[str, Outline] = {}
    for shape in _shapes(_settings(glb=False), ifc, products):
        o = outline_of(shape.geometry.verts, shape.geometry.faces)
        if o is not None:
            out[shape.guid] = o
    return out


class ManifestProduct(BaseModel):
    global_id: str
    ifc_class: str
    name: str | None = None


class ManifestStorey(BaseModel):
    id: str = Field(description=f"Storey GlobalId, or {OUTSIDE!r} for what no storey holds.")
    name: str | None = None
    elevation: float | None = Field(None, description="World z of the storey, metres.")
    file: str = Field(description="GLB file name in the model's cache folder.")
    products: list[ManifestProduct] = Field(description="What the file shows, by GlobalId.")


class Manifest(BaseModel):
    sha256: str
    frame: str = "glTF y-up: (x, y, z) = model (x, z, -y), metres"
    storeys: list[ManifestStorey]


def storey_products(ifc: ifcopenshell.file) -> dict[str, list[ifcopenshell.entity_instance]]:
    """Storey GlobalId (bottom-up) → the elements and spaces a viewer shows on it."""
    nodes = {n.global_id: n for n in spatial_tree(ifc, 1.0)}
    buckets: dict[str, list[ifcopenshell.entity_instance]] = {
        n.global_id: [] for n in nodes.values() if n.kind == "storey"
    }
    containers = element_containers(ifc)

    def put(e: ifcopenshell.entity_instance, container: str | None) -> None:
        node = nodes.get(container) if container else None
        storey = node.storey_id if node and node.storey_id in buckets else OUTSIDE
        buckets.setdefault(storey, []).append(e)

    for el in ifc.by_type("IfcElement"):
        if el.Representation is not None and not any(el.is_a(c) for c in _NOT_SHOWN):
            put(el, containers.get(el.id()))
    for space in ifc.by_type("IfcSpace"):
        if space.Representation is not None:
            put(space, space.GlobalId)
    return buckets


def write_glb(
    ifc: ifcopenshell.file, products: Sequence[ifcopenshell.entity_instance], out: Path
) -> int:
    """Write the products' meshes as one GLB (atomically: readers never see half a file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    settings = _settings(glb=True)
    serializer = ifcopenshell.geom.serializers.gltf(str(tmp), settings)
    serializer.setFile(ifc)
    serializer.setUnitNameAndMagnitude("METER", 1.0)
    serializer.writeHeader()
    n = 0
    for shape in _shapes(settings, ifc, products):
        serializer.write(shape)
        n += 1
    serializer.finalize()
    del serializer  # the C++ side closes the file when the object goes
    tmp.replace(out)
    return n


def _file_name(storey_id: str) -> str:
    # GlobalIds use [0-9A-Za-z_$]: safe in a file name; '$' is spelled out for URLs and shells
    return storey_id.replace("$", "-") + ".glb"


class GlbCache:
    """GLB files per storey under ``root/<sha256>/``; a file, once written, never changes
    (its IFC's hash names the folder), so any process may serve it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def folder(self, sha256: str) -> Path:
        return self.root / sha256

    def manifest(self, sha256: str, load: Callable[[], ifcopenshell.file]) -> Manifest:
        path = self.folder(sha256) / MANIFEST
        if path.exists():
            return Manifest.model_validate_json(path.read_text())
        ifc = load()
        storeys = {n.global_id: n for n in spatial_tree(ifc, _unit(ifc)) if n.kind == "storey"}
        entries = [
            ManifestStorey(
                id=sid,
                name=storeys[sid].name if sid in storeys else None,
                elevation=storeys[sid].elevation if sid in storeys else None,
                file=_file_name(sid),
                products=[
                    ManifestProduct(global_id=p.GlobalId, ifc_class=p.is_a(), name=p.Name)
                    for p in products
                ],
            )
            for sid, products in storey_products(ifc).items()
        ]
        manifest = Manifest(sha256=sha256, storeys=entries)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(manifest.model_dump_json(indent=1))
        tmp.replace(path)
        return manifest

    def storey(
        self, sha256: str, storey_id: str, load: Callable[[], ifcopenshell.file]
    ) -> tuple[Path, float | None]:
        """The storey's GLB and the seconds it took to make it (None: it was cached)."""
        path = self.folder(sha256) / _file_name(storey_id)
        if path.exists():
            return path, None
        ifc = load()
        buckets = storey_products(ifc)
        if storey_id not in buckets:
            raise KeyError(storey_id)
        # one writer per process at a time: ifcopenshell files are not safe to share between
        # threads; another process writing the same file writes the same bytes
        with self._lock:
            if path.exists():
                return path, None
            t0 = time.perf_counter()
            write_glb(ifc, buckets[storey_id], path)
            return path, time.perf_counter() - t0


def _unit(ifc: ifcopenshell.file) -> float:
    import ifcopenshell.util.unit

    return ifcopenshell.util.unit.calculate_unit_scale(ifc)
