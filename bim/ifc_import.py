"""Read an IFC file into plain rows: the spatial tree, elements, quantities and the work schedule.

Nothing here touches the database: ``read_ifc`` checks and parses, ``store.import_model``
writes. The checks run before ifcopenshell sees the file because its parser is lenient: it
opens a truncated or damaged file without raising and just drops what it could not read, which
would store half a model.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.placement
import ifcopenshell.util.unit

from bim.errors import (
    CorruptFileError,
    EmptyFileError,
    NoStoreysError,
    NotIfcError,
    TruncatedFileError,
    UnsupportedSchemaError,
)

# The schemas the issue asks for, as header names. IFC4X1/IFC4X2 were drafts: refused with a
# message, though ifcopenshell could read some of them.
SUPPORTED_SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3", "IFC4X3_TC1", "IFC4X3_ADD1", "IFC4X3_ADD2")
_SCHEMA_RE = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", re.IGNORECASE)
_END = b"END-ISO-10303-21;"
_LOG_PREFIX = re.compile(r"^\[error\](?:\s*\[[^\]]*\])*\s*")

# Quantity entity -> the unit type its value is in (IfcQuantityNumber, 4X3, has none).
_QUANTITY_UNIT = {
    "IfcQuantityLength": "LENGTHUNIT",
    "IfcQuantityArea": "AREAUNIT",
    "IfcQuantityVolume": "VOLUMEUNIT",
    "IfcQuantityWeight": "MASSUNIT",
    "IfcQuantityTime": "TIMEUNIT",
    "IfcQuantityCount": None,
    "IfcQuantityNumber": None,
}


@dataclass
class NodeRow:
    global_id: str
    parent_id: str | None
    kind: str
    ifc_class: str
    name: str | None
    long_name: str | None
    building_id: str | None = None
    storey_id: str | None = None
    position: int = 0
    elevation: float | None = None
    footprint: dict[str, Any] | None = None
    z_min: float | None = None
    z_max: float | None = None


@dataclass
class ElementRow:
    global_id: str
    ifc_class: str
    name: str | None
    object_type: str | None
    tag: str | None
    container_id: str | None
    building_id: str | None
    storey_id: str | None
    space_id: str | None
    quantities: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class TaskRow:
    global_id: str
    parent_id: str | None
    schedule_id: str | None
    schedule_name: str | None
    identification: str | None
    name: str | None
    is_milestone: bool
    predefined_type: str | None
    schedule_start: datetime | None
    schedule_finish: datetime | None
    schedule_duration: str | None
    predecessors: list[str]
    products: list[str]
    position: int


@dataclass
class ParsedModel:
    """One IFC file read into rows, with the open ifcopenshell file for geometry."""

    file_name: str
    data: bytes
    sha256: str
    schema: str
    application: str
    length_unit_m: float
    ifc: ifcopenshell.file
    nodes: list[NodeRow]
    elements: list[ElementRow]
    tasks: list[TaskRow]

    def counts(self) -> dict[str, Any]:
        kinds = Counter(n.kind for n in self.nodes)
        return {
            "storeys": kinds["storey"],
            "spaces": kinds["space"],
            "buildings": kinds["building"],
            "elements": len(self.elements),
            "tasks": len(self.tasks),
            "by_class": dict(sorted(Counter(e.ifc_class for e in self.elements).items())),
        }


def check_source(data: bytes, name: str) -> str:
    """The header's schema, once the bytes look like a whole STEP IFC file of a known schema."""
    if not data:
        raise EmptyFileError(name)
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"PK\x03\x04"):
        raise NotIfcError(name, "a ZIP archive: unzip the .ifczip and import the .ifc inside")
    if head.startswith(b"<"):
        raise NotIfcError(name, "XML: ifcXML is not supported")
    if not head.startswith(b"ISO-10303-21"):
        raise NotIfcError(name, "it does not start with ISO-10303-21;")
    m = _SCHEMA_RE.search(data[:65536])
    if not m:
        raise CorruptFileError(name, "the header has no FILE_SCHEMA")
    schema = m.group(1).decode("ascii", "replace").strip().upper()
    if schema not in SUPPORTED_SCHEMAS:
        raise UnsupportedSchemaError(name, schema, ", ".join(SUPPORTED_SCHEMAS))
    if _END not in data[-1024:]:
        raise TruncatedFileError(name, len(data))
    return schema


def _application(ifc: ifcopenshell.file) -> str:
    """Authoring tool from the header's FILE_NAME, best effort (exporters fill it loosely)."""
    try:
        return str(ifc.header.file_name.originating_system or "")[:200]
    except (AttributeError, RuntimeError):
        return ""


def open_ifc(path: Path, name: str) -> ifcopenshell.file:
    """ifcopenshell.open, turning its parse log's errors into a CorruptFileError.

    The log is process-wide: it is drained before and read right after the open.
    """
    ifcopenshell.get_log()
    try:
        f = ifcopenshell.open(str(path))
    except ifcopenshell.SchemaError as exc:
        raise UnsupportedSchemaError(name, str(exc), ", ".join(SUPPORTED_SCHEMAS)) from None
    except (ifcopenshell.Error, OSError, RuntimeError) as exc:
        raise CorruptFileError(name, str(exc) or type(exc).__name__) from None
    errors = [ln for ln in ifcopenshell.get_log().splitlines() if ln.startswith("[error]")]
    if errors:
        first = _LOG_PREFIX.sub("", errors[0])[:200]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise CorruptFileError(name, first + more)
    return f


def open_bytes(data: bytes, name: str) -> ifcopenshell.file:
    """Open IFC bytes (an upload, a stored source) through a temporary file.

    ifcopenshell reads raw bytes only from a path: ``file.from_string`` wants ``str``, and
    decoding would mangle the non-ASCII bytes that real exporters write.
    """
    check_source(data, name)
    with tempfile.NamedTemporaryFile(suffix=".ifc") as tmp:
        tmp.write(data)
        tmp.flush()
        return open_ifc(Path(tmp.name), name)


def read_ifc(
    source: Path | bytes, name: str | None = None, *, data: bytes | None = None
) -> ParsedModel:
    """Check, open and parse an IFC file (a path or its bytes) into rows; raise a
    ``BimImportError`` a user understands when it cannot be imported whole. ``data``: the
    path's bytes when the caller has read them already."""
    if isinstance(source, Path):
        name = name or source.name
        data = source.read_bytes() if data is None else data
        check_source(data, name)
        ifc = open_ifc(source, name)
    else:
        name = name or "upload.ifc"
        data = source
        ifc = open_bytes(data, name)
    return parse(ifc, data, name)


def parse(ifc: ifcopenshell.file, data: bytes, name: str) -> ParsedModel:
    scale = ifcopenshell.util.unit.calculate_unit_scale(ifc)
    nodes = spatial_tree(ifc, scale)
    if not any(n.kind == "storey" for n in nodes):
        raise NoStoreysError(name)
    by_id = {n.global_id: n for n in nodes}
    elements = _elements(ifc, by_id)
    return ParsedModel(
        file_name=name,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        schema=ifc.schema_identifier,
        application=_application(ifc),
        length_unit_m=scale,
        ifc=ifc,
        nodes=nodes,
        elements=elements,
        tasks=_tasks(ifc),
    )


def _kind(e: ifcopenshell.entity_instance) -> str | None:
    # Order matters: IfcBuilding is an IfcFacility in IFC4X3, IfcBuildingStorey a sibling of
    # IfcFacilityPart. is_a() with a class the schema lacks is simply False.
    for cls, kind in (
        ("IfcProject", "project"),
        ("IfcSite", "site"),
        ("IfcBuildingStorey", "storey"),
        ("IfcSpace", "space"),
        ("IfcBuilding", "building"),
        ("IfcFacility", "building"),
        ("IfcBuildingPart", "part"),
        ("IfcFacilityPart", "part"),
        ("IfcSpatialStructureElement", "zone"),
        ("IfcSpatialElement", "zone"),
    ):
        if e.is_a(cls):
            return kind
    return None


def _children(e: ifcopenshell.entity_instance) -> Iterable[ifcopenshell.entity_instance]:
    for rel in getattr(e, "IsDecomposedBy", None) or ():
        if rel.is_a("IfcRelAggregates"):
            yield from rel.RelatedObjects


def _z(e: ifcopenshell.entity_instance, scale: float) -> float | None:
    """World z of a product's placement in metres (the frame geometry is exported in)."""
    if getattr(e, "ObjectPlacement", None) is None:
        return None
    try:
        return float(ifcopenshell.util.placement.get_local_placement(e.ObjectPlacement)[2][3]) * (
            scale
        )
    except (AttributeError, TypeError, ValueError):
        return None


def spatial_tree(ifc: ifcopenshell.file, scale: float) -> list[NodeRow]:
    """Project → site → building → storey → space, walked along IfcRelAggregates."""
    out: list[NodeRow] = []

    def walk(e: ifcopenshell.entity_instance, parent: NodeRow | None, position: int) -> None:
        kind = _kind(e)
        if kind is None or not getattr(e, "GlobalId", None):
            return
        row = NodeRow(
            global_id=e.GlobalId,
            parent_id=parent.global_id if parent else None,
            kind=kind,
            ifc_class=e.is_a(),
            name=e.Name,
            long_name=getattr(e, "LongName", None),
            building_id=parent.building_id if parent else None,
            storey_id=parent.storey_id if parent else None,
            position=position,
        )
        if kind == "building":
            row.building_id = row.global_id
        if kind == "storey":
            row.storey_id = row.global_id
            row.elevation = _z(e, scale)
            if row.elevation is None and getattr(e, "Elevation", None) is not None:
                row.elevation = float(e.Elevation) * scale
        out.append(row)
        kids = [c for c in _children(e) if _kind(c) is not None]
        if all(_kind(c) == "storey" for c in kids):
            # storeys bottom-up, whatever order the exporter wrote them in
            kids.sort(key=lambda c: (_z(c, scale) or 0.0, c.id()))
        for i, c in enumerate(kids):
            walk(c, row, i)

    for i, project in enumerate(ifc.by_type("IfcProject")):
        walk(project, None, i)
    return out


def _element_parents(ifc: ifcopenshell.file) -> dict[int, ifcopenshell.entity_instance]:
    """Element → the element it is part of (aggregate, nest, opening host, filled opening)."""
    parent: dict[int, ifcopenshell.entity_instance] = {}
    for rel in ifc.by_type("IfcRelAggregates"):
        if rel.RelatingObject.is_a("IfcElement"):
            for child in rel.RelatedObjects:
                parent.setdefault(child.id(), rel.RelatingObject)
    for rel in ifc.by_type("IfcRelNests"):
        if rel.RelatingObject.is_a("IfcElement"):
            for child in rel.RelatedObjects:
                parent.setdefault(child.id(), rel.RelatingObject)
    for rel in ifc.by_type("IfcRelVoidsElement"):
        parent.setdefault(rel.RelatedOpeningElement.id(), rel.RelatingBuildingElement)
    for rel in ifc.by_type("IfcRelFillsElement"):
        parent.setdefault(rel.RelatedBuildingElement.id(), rel.RelatingOpeningElement)
    return parent


def element_containers(ifc: ifcopenshell.file) -> dict[int, str]:
    """Element step id → GlobalId of its spatial container, inherited through its parents."""
    direct: dict[int, str] = {}
    for rel in ifc.by_type("IfcRelContainedInSpatialStructure"):
        gid = rel.RelatingStructure.GlobalId
        for el in rel.RelatedElements:
            direct.setdefault(el.id(), gid)
    parents = _element_parents(ifc)
    out: dict[int, str] = {}
    for el in ifc.by_type("IfcElement"):
        seen = 0
        e: ifcopenshell.entity_instance | None = el
        while e is not None and e.id() not in direct and seen < 32:  # guard against cycles
            e = parents.get(e.id())
            seen += 1
        if e is not None and e.id() in direct:
            out[el.id()] = direct[e.id()]
    return out


def _si_value(q: ifcopenshell.entity_instance, scales: dict[str, float]) -> float | None:
    cls = q.is_a()
    if cls not in _QUANTITY_UNIT:
        return None  # IfcPhysicalComplexQuantity and the like
    value = q[3]
    if not isinstance(value, int | float):
        return None
    unit_type = _QUANTITY_UNIT[cls]
    if unit_type is None:
        return float(value)
    if q.Unit is not None:
        return float(value) * ifcopenshell.util.unit.get_unit_scale(q.Unit)
    return float(value) * scales[unit_type]


def _quantities(ifc: ifcopenshell.file) -> dict[int, dict[str, dict[str, float]]]:
    """Element step id → {quantity set: {quantity: value in SI units}}, in one pass."""
    scales = {
        u: ifcopenshell.util.unit.calculate_unit_scale(ifc, u)
        for u in {u for u in _QUANTITY_UNIT.values() if u}
    }
    out: dict[int, dict[str, dict[str, float]]] = {}
    for rel in ifc.by_type("IfcRelDefinesByProperties"):
        defs = rel.RelatingPropertyDefinition
        for qto in defs if isinstance(defs, tuple) else (defs,):
            if not qto.is_a("IfcElementQuantity"):
                continue
            values = {}
            for q in qto.Quantities or ():
                v = _si_value(q, scales)
                if v is not None and q.Name:
                    values[q.Name] = v
            if not values:
                continue
            for obj in rel.RelatedObjects:
                out.setdefault(obj.id(), {}).setdefault(qto.Name or "Quantities", {}).update(values)
    return out


def _elements(ifc: ifcopenshell.file, nodes: dict[str, NodeRow]) -> list[ElementRow]:
    containers = element_containers(ifc)
    quantities = _quantities(ifc)
    out = []
    for el in ifc.by_type("IfcElement"):
        container_id = containers.get(el.id())
        node = nodes.get(container_id) if container_id else None
        out.append(
            ElementRow(
                global_id=el.GlobalId,
                ifc_class=el.is_a(),
                name=el.Name,
                object_type=el.ObjectType,
                tag=getattr(el, "Tag", None),
                container_id=container_id,
                building_id=node.building_id if node else None,
                storey_id=node.storey_id if node else None,
                space_id=node.global_id if node and node.kind == "space" else None,
                quantities=quantities.get(el.id(), {}),
            )
        )
    return out


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        # IFC date-times are local site times; a zone, if written, is dropped on purpose
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        return None


def _tasks(ifc: ifcopenshell.file) -> list[TaskRow]:
    tasks = ifc.by_type("IfcTask")
    if not tasks:
        return []
    parent: dict[int, ifcopenshell.entity_instance] = {}
    for rel in ifc.by_type("IfcRelNests"):
        if rel.RelatingObject.is_a("IfcTask"):
            for child in rel.RelatedObjects:
                if child.is_a("IfcTask"):
                    parent[child.id()] = rel.RelatingObject
    schedule: dict[int, ifcopenshell.entity_instance] = {}
    for rel in ifc.by_type("IfcRelAssignsToControl"):
        if rel.RelatingControl.is_a("IfcWorkSchedule"):
            for obj in rel.RelatedObjects:
                schedule[obj.id()] = rel.RelatingControl
    predecessors: dict[int, list[str]] = {}
    for rel in ifc.by_type("IfcRelSequence"):
        predecessors.setdefault(rel.RelatedProcess.id(), []).append(rel.RelatingProcess.GlobalId)
    products: dict[int, list[str]] = {}
    for rel in ifc.by_type("IfcRelAssignsToProduct"):
        product = rel.RelatingProduct
        for obj in rel.RelatedObjects:
            if obj.is_a("IfcTask") and getattr(product, "GlobalId", None):
                products.setdefault(obj.id(), []).append(product.GlobalId)
    for rel in ifc.by_type("IfcRelAssignsToProcess"):
        if rel.RelatingProcess.is_a("IfcTask"):
            for obj in rel.RelatedObjects:
                if obj.is_a("IfcProduct"):
                    products.setdefault(rel.RelatingProcess.id(), []).append(obj.GlobalId)

    def schedule_of(t: ifcopenshell.entity_instance) -> ifcopenshell.entity_instance | None:
        for _ in range(64):  # nested tasks take their root's schedule
            if t.id() in schedule:
                return schedule[t.id()]
            if t.id() not in parent:
                return None
            t = parent[t.id()]
        return None

    out = []
    for i, t in enumerate(tasks):
        time = getattr(t, "TaskTime", None)  # IFC4 and later
        ws = schedule_of(t)
        out.append(
            TaskRow(
                global_id=t.GlobalId,
                parent_id=parent[t.id()].GlobalId if t.id() in parent else None,
                schedule_id=ws.GlobalId if ws else None,
                schedule_name=ws.Name if ws else None,
                identification=getattr(t, "Identification", None) or getattr(t, "TaskId", None),
                name=t.Name,
                is_milestone=bool(t.IsMilestone),
                predefined_type=getattr(t, "PredefinedType", None),
                # unscheduled tasks take their computed early dates, as the IFC spec's example
                schedule_start=_when(time.ScheduleStart or time.EarlyStart) if time else None,
                schedule_finish=_when(time.ScheduleFinish or time.EarlyFinish) if time else None,
                schedule_duration=time.ScheduleDuration if time else None,
                predecessors=sorted(predecessors.get(t.id(), [])),
                products=sorted(set(products.get(t.id(), []))),
                position=i,
            )
        )
    return out
