"""Pydantic models at the BIM module's boundary: what callers pass in and get back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from smartsite.protocol.topics import SEGMENT_PATTERN

Ident = Annotated[str, Field(pattern=SEGMENT_PATTERN)]
GlobalId = Annotated[str, Field(min_length=1, max_length=64, description="IFC GlobalId.")]
NodeKind = Literal["project", "site", "building", "part", "storey", "space", "zone"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Out):
    id: int = Field(description="Database id of this model version.")
    project_id: str
    version: int = Field(description="1 for the first import, +1 for each changed file.")
    sha256: str = Field(description="SHA-256 of the IFC file, hex.")
    file_name: str
    file_size: int
    schema_name: str = Field(description="IFC schema from the file header, e.g. IFC4X3_ADD2.")
    application: str = Field(description="Authoring tool named in the header.")
    counts: dict[str, Any] = Field(description="Storeys, spaces, elements (and by class), tasks.")
    imported_at: datetime


class PlacementRef(_Out):
    id: int
    kind: Literal["device", "zone", "camera_zone"]
    device_id: str | None = None
    zone: str | None = None
    target_id: str | None = Field(None, description="GlobalId it is placed on, if any.")
    reason: str = Field("", description="Why it no longer resolves (stale ones).")


class ImportReport(_Out):
    model: ModelInfo
    unchanged: bool = Field(
        description="True: the file is the project's current version already; nothing stored."
    )
    kept: list[PlacementRef] = Field(description="Placements that resolve in this version.")
    stale: list[PlacementRef] = Field(
        description="Placements whose GlobalId is gone in this version (kept, marked stale)."
    )
    seconds: float = Field(description="Wall time of the import.")
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="Seconds per phase: parse (check, open, rows), outlines (space geometry), "
        "store (the transaction).",
    )


class TreeNode(_Out):
    global_id: str
    kind: NodeKind
    ifc_class: str
    name: str | None = None
    long_name: str | None = None
    elevation: float | None = Field(None, description="Storeys: world z, metres.")
    elements: dict[str, int] = Field(
        default_factory=dict, description="Elements directly contained, count by IFC class."
    )
    children: list[TreeNode] = Field(default_factory=list)


class TaskOut(_Out):
    global_id: str
    parent_id: str | None
    schedule_id: str | None
    schedule_name: str | None
    identification: str | None
    name: str | None
    is_milestone: bool
    predefined_type: str | None
    schedule_start: datetime | None = Field(description="Scheduled (else early) start, local.")
    schedule_finish: datetime | None = Field(description="Scheduled (else early) finish, local.")
    schedule_duration: str | None = Field(description="ISO 8601 duration as in the file.")
    predecessors: list[str]
    products: list[str] = Field(description="GlobalIds of the products the task builds.")


class ModelTree(_Out):
    model: ModelInfo
    roots: list[TreeNode]
    unplaced_elements: dict[str, int] = Field(
        description="Elements no spatial node contains, count by IFC class."
    )
    tasks: list[TaskOut]


class Point(_In):
    x: float = Field(description="Model world x, metres.")
    y: float = Field(description="Model world y, metres.")
    z: float = Field(description="Model world z (up), metres.")


class DevicePlacementIn(_In):
    """A device at a spatial node or element (by GlobalId) or at a point of the model."""

    project_id: Ident
    device_id: Ident
    target_id: GlobalId | None = Field(None, description="Space, storey or element GlobalId.")
    point: Point | None = Field(None, description="Or a point in model coordinates.")
    note: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> DevicePlacementIn:
        if (self.target_id is None) == (self.point is None):
            raise ValueError("give exactly one of target_id (a GlobalId) or point")
        return self


class ZoneIn(_In):
    """A named zone: a space, an element's footprint (shaft, opening, slab edge), or a circle
    around a point (a crane's radius)."""

    project_id: Ident
    zone: str = Field(min_length=1, max_length=64, description="Zone name, unique per project.")
    target_id: GlobalId | None = Field(None, description="Space or element GlobalId.")
    center: Point | None = Field(None, description="Or the centre of a circle...")
    radius: float | None = Field(None, gt=0, le=1000, description="...and its radius, metres.")
    danger: bool = Field(True, description="A danger zone (intrusion is an alert).")
    note: str = ""

    @model_validator(mode="after")
    def _one_shape(self) -> ZoneIn:
        circle = self.center is not None and self.radius is not None
        if (self.target_id is None) == (not circle) or (self.center is None) != (
            self.radius is None
        ):
            raise ValueError("give exactly one of target_id, or center with radius")
        return self


class CameraZoneIn(_In):
    """A camera's image zone (the name the edge reports in events) linked to a named zone."""

    project_id: Ident
    device_id: Ident = Field(description="The camera.")
    image_zone: str = Field(min_length=1, max_length=64, description="Zone name on the image.")
    zone: str = Field(min_length=1, max_length=64, description="Named BIM zone it shows.")


class BimRef(_Out):
    global_id: str
    name: str | None = None
    ifc_class: str


class BimContext(_Out):
    """Where on the building something is: what the alert engine stores with an alert."""

    status: Literal["resolved", "stale", "unplaced", "no_model"] = Field(
        description="resolved; stale: placed on a GlobalId gone in the current version (the "
        "context is from the version it last resolved in); unplaced: no placement; no_model."
    )
    project_id: str
    device_id: str
    zone: str | None = Field(None, description="Named BIM zone, when the alert had a zone.")
    via: Literal["device", "zone", "camera_zone"] | None = None
    model_version: int | None = None
    building: BimRef | None = None
    storey: BimRef | None = None
    space: BimRef | None = None
    element: BimRef | None = None
    point: Point | None = None
    danger: bool | None = Field(None, description="The named zone is a danger zone.")
    note: str = ""


class PlacementOut(_Out):
    id: int
    project_id: str
    kind: Literal["device", "zone", "camera_zone"]
    device_id: str | None
    zone: str | None
    danger: bool
    target_id: str | None
    point: Point | None = Field(description="Device point or circle centre.")
    radius: float | None
    linked_zone: str | None = Field(description="camera_zone: the named zone it shows.")
    footprint: dict[str, Any] | None = Field(description="Zones: GeoJSON outline, metres.")
    z_min: float | None
    z_max: float | None
    status: Literal["resolved", "stale"]
    resolved_version: int | None = Field(description="Model version it last resolved in.")
    stale_since_version: int | None
    note: str
