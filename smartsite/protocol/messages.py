"""Protocol v1 payloads: pydantic models that both the edge and the hub import.

Every device→hub JSON message carries the schema version ``v``, a unique message ``id``
(the hub's idempotency key), the ``device`` that sent it (must match the topic), the
device's timestamp ``ts`` and a per-device sequence number ``seq`` (gap detection).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from smartsite.protocol.limits import MAX_GALLERY_WORKERS, MAX_READINGS_PER_MESSAGE
from smartsite.protocol.topics import SEGMENT_PATTERN, Kind

SCHEMA_VERSION = 1

Ident = Annotated[str, Field(pattern=SEGMENT_PATTERN, description="Topic-safe identifier.")]
Metric = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Metric name, snake_case.")
]


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


Finite = Annotated[float, AfterValidator(_finite)]
Unit01 = Annotated[float, Field(ge=0.0, le=1.0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


WIRE_REQUIRED = ("id", "ts")
"""Envelope fields with a default for building a message in Python that a received message
must nevertheless carry: a made-up ``id`` would store every redelivery again."""


def _wire_required_in_schema(schema: dict[str, Any]) -> None:
    schema["required"] = [*WIRE_REQUIRED, *schema.get("required", [])]


class Envelope(_Model):
    """Fields every device→hub JSON message carries."""

    model_config = ConfigDict(json_schema_extra=_wire_required_in_schema)

    v: Literal[1] = Field(SCHEMA_VERSION, description="Protocol schema version.")
    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique message id.")
    device: Ident = Field(description="Sending device; must equal the device in the topic.")
    ts: AwareDatetime = Field(
        default_factory=lambda: datetime.now(UTC), description="Device time when sent."
    )
    seq: int = Field(ge=0, description="Per-device sequence number, +1 per message.")

    # "after", not "before": a before-validator makes pydantic parse JSON into Python objects
    # first, which triples the cost of validating on the hub's hottest path.
    @model_validator(mode="after")
    def _wire_fields_present(self, info: ValidationInfo) -> Envelope:
        if info.mode == "json":
            missing = [k for k in WIRE_REQUIRED if k not in self.model_fields_set]
            if missing:
                raise ValueError(f"a received message must carry {' and '.join(missing)}")
        return self


# --- telemetry ----------------------------------------------------------------------------


class Reading(_Model):
    """One sensor reading."""

    metric: Metric = Field(description="What was measured, e.g. moment_pct, pm10, noise_dba.")
    value: Finite = Field(description="Measured value in ``unit``.")
    unit: str = Field(max_length=16, description="Unit, e.g. '%', 'mm', 'ug/m3', 'dB(A)'.")
    time: AwareDatetime | None = Field(
        None, description="When it was measured; the message ``ts`` when absent."
    )
    source: Ident | None = Field(
        None,
        description="Sub-device the reading belongs to when a gateway publishes for it "
        "(ThingsBoard gateway style); the sending device when absent.",
    )


class Telemetry(Envelope):
    """A batch of sensor readings."""

    kind: Literal["telemetry"] = Field("telemetry", description="Message kind.")
    readings: list[Reading] = Field(
        min_length=1, max_length=MAX_READINGS_PER_MESSAGE, description="The readings."
    )


# --- detections -----------------------------------------------------------------------------


class EventType(StrEnum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


class FaceMatch(_Model):
    """Result of matching a face against the project's enrolled gallery."""

    worker_id: str | None = Field(None, max_length=64, description="Matched worker; None: unknown.")
    similarity: float = Field(ge=-1.0, le=1.0, description="Cosine similarity of the best match.")


class Attributes(_Model):
    """What the edge judged about a tracked person."""

    hard_hat: bool | None = Field(None, description="Wearing a hard hat; None when not visible.")
    vest: bool | None = Field(None, description="Wearing a reflective vest; None when not visible.")
    lying: bool | None = Field(None, description="Lying / fallen posture.")
    face: FaceMatch | None = Field(None, description="Face recognition result, if a face was seen.")


class TrackedObject(_Model):
    """One tracked object's state (Frigate's ``before``/``after``)."""

    label: str = Field(max_length=32, description="Detector class, e.g. person.")
    score: Unit01 = Field(description="Detection confidence.")
    box: tuple[Unit01, Unit01, Unit01, Unit01] = Field(
        description="x1, y1, x2, y2 normalised to the frame (0..1)."
    )
    zones: list[Ident] = Field(
        default_factory=list, description="Zones the box bottom-centre is in."
    )
    attributes: Attributes = Field(default_factory=Attributes, description="Judged attributes.")


class Event(Envelope):
    """A tracked-object lifecycle event from a camera (new / update / end)."""

    kind: Literal["event"] = Field("event", description="Message kind.")
    type: EventType = Field(description="new, update or end of the track.")
    event_id: uuid.UUID = Field(
        description="Stable id of this track's event across new/update/end."
    )
    camera: Ident = Field(description="Camera the track is on.")
    track_id: int = Field(ge=0, description="Tracker id on that camera.")
    start_time: AwareDatetime = Field(description="When the track started.")
    end_time: AwareDatetime | None = Field(None, description="When it ended (type=end).")
    before: TrackedObject | None = Field(None, description="State at the previous event.")
    after: TrackedObject = Field(description="State now.")
    evidence_id: Ident | None = Field(None, description="Best snapshot, published on evidence/.")


class Direction(StrEnum):
    IN = "in"
    OUT = "out"
    UNKNOWN = "unknown"


class Attendance(Envelope):
    """An enrolled worker recognised at a gate or camera."""

    kind: Literal["attendance"] = Field("attendance", description="Message kind.")
    worker_id: str = Field(
        max_length=64, description="Registry id of the worker (never the ID number)."
    )
    similarity: float = Field(ge=-1.0, le=1.0, description="Face match cosine similarity.")
    direction: Direction = Field(Direction.UNKNOWN, description="Entering or leaving.")
    camera: Ident | None = Field(None, description="Camera or gate reader that saw them.")
    evidence_id: Ident | None = Field(None, description="Snapshot, published on evidence/.")


class Rule(StrEnum):
    """Unsafe behaviours judged on the edge.

    未戴安全帽, 未穿反光衣, 区域入侵, 跌倒, 陌生人, 人员聚集, 烟火, 吸烟.
    """

    NO_HARD_HAT = "no_hard_hat"
    NO_VEST = "no_vest"
    ZONE_INTRUSION = "zone_intrusion"
    FALL = "fall"
    UNKNOWN_PERSON = "unknown_person"
    CROWDING = "crowding"
    SMOKE_FIRE = "smoke_fire"
    SMOKING = "smoking"


class Severity(StrEnum):
    """Two-level alarms: 预警 warning and 报警 alarm."""

    WARNING = "warning"
    ALARM = "alarm"


class EdgeAlert(Envelope):
    """A violation judged on the edge."""

    kind: Literal["alert"] = Field("alert", description="Message kind.")
    rule: Rule = Field(description="Which unsafe behaviour.")
    severity: Severity = Field(description="warning (预警) or alarm (报警).")
    camera: Ident | None = Field(None, description="Camera it was seen on.")
    event_id: uuid.UUID | None = Field(None, description="Track event it belongs to.")
    zone: Ident | None = Field(None, description="Zone involved, for zone rules.")
    evidence_id: Ident | None = Field(None, description="Snapshot, published on evidence/.")
    detail: str = Field("", max_length=500, description="Human-readable detail.")


# --- status and config -------------------------------------------------------------------------


class State(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Status(Envelope):
    """Retained availability; the offline form is also the connection's MQTT last will,
    which carries ``seq`` 0 (the broker sends it outside the device's sequence)."""

    kind: Literal["status"] = Field("status", description="Message kind.")
    state: State = Field(description="online or offline.")
    detail: dict[str, str] = Field(
        default_factory=dict, description="e.g. per-camera state, software version."
    )


class ZoneType(StrEnum):
    DANGER = "danger"
    RESTRICTED = "restricted"
    GATE = "gate"


class Zone(_Model):
    """A zone on one camera's image, as a normalised polygon."""

    id: Ident = Field(description="Zone id.")
    name: str = Field(max_length=100, description="Display name.")
    type: ZoneType = Field(description="danger, restricted or gate.")
    camera: Ident = Field(description="Camera whose image the polygon is on.")
    polygon: list[tuple[Unit01, Unit01]] = Field(min_length=3, description="Vertices, normalised.")
    required_ppe: list[Literal["hard_hat", "vest"]] = Field(
        default_factory=list, description="PPE required inside."
    )
    allowed_roles: list[str] = Field(default_factory=list, description="Trades allowed to enter.")


class Threshold(_Model):
    """Two-level threshold: 预警 warning and 报警 alarm."""

    warning: Finite | None = Field(None, description="Warning level.")
    alarm: Finite | None = Field(None, description="Alarm level.")


class Config(_Model):
    """Hub→edge configuration, retained on the device's ``config`` topic."""

    v: Literal[1] = Field(SCHEMA_VERSION, description="Protocol schema version.")
    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique message id.")
    ts: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC), description="Issued at.")
    kind: Literal["config"] = Field("config", description="Message kind.")
    device: Ident = Field(description="Device this config is for.")
    zones: list[Zone] = Field(default_factory=list, description="Zones on this device's cameras.")
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="Per-metric or per-rule thresholds."
    )
    gallery_version: str | None = Field(
        None,
        description="Enrolled-face gallery version the device should run; the gallery itself "
        "is retained on the device's ``gallery`` topic (FaceGallery).",
    )
    models: dict[str, str] = Field(
        default_factory=dict, description="Model name → version (sha256) the device should run."
    )


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256, hex.")]
Short = Annotated[str, Field(max_length=64)]
Template = Annotated[
    list[Finite], Field(min_length=16, max_length=1024, description="L2-normalised embedding.")
]


class FaceGallery(_Model):
    """Hub→edge enrolled-face gallery, retained on the device's ``gallery`` topic.

    Biometric data: the hub sends it only to the gateways of the worker's own project, the
    broker ACL lets only that gateway read it, and ingest ignores it. One mean template per
    enrolled worker currently on the project; an empty ``workers`` unloads the gallery.
    """

    v: Literal[1] = Field(SCHEMA_VERSION, description="Protocol schema version.")
    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique message id.")
    ts: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC), description="Issued at.")
    kind: Literal["gallery"] = Field("gallery", description="Message kind.")
    device: Ident = Field(description="Device this gallery is for.")
    project: Ident = Field(description="Project whose enrolled workers these are.")
    version: Sha256 = Field(description="sha256 of the content (Config.gallery_version).")
    model_sha256: Sha256 = Field(description="Face recogniser the templates were made with.")
    workers: dict[Short, Template] = Field(
        default_factory=dict,
        max_length=MAX_GALLERY_WORKERS,
        description="Worker registry id → mean face template (never the ID number).",
    )
    roles: dict[Short, Short] = Field(
        default_factory=dict,
        max_length=MAX_GALLERY_WORKERS,
        description="Worker registry id → trade, for zones' allowed_roles (enrolled "
        "workers with a trade in the registry).",
    )


DeviceMessage = Telemetry | Event | Attendance | EdgeAlert | Status

MODELS: dict[Kind, type[BaseModel]] = {
    Kind.TELEMETRY: Telemetry,
    Kind.EVENT: Event,
    Kind.ATTENDANCE: Attendance,
    Kind.ALERT: EdgeAlert,
    Kind.STATUS: Status,
    Kind.CONFIG: Config,
    Kind.GALLERY: FaceGallery,
}


def encode(message: BaseModel) -> bytes:
    """Serialise a message for publishing (compact JSON, UTF-8)."""
    return message.model_dump_json(exclude_none=True).encode()


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema per message kind, for integrators."""
    return {kind.value: model.model_json_schema() for kind, model in MODELS.items()}
