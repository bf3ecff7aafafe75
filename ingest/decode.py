"""Turn one MQTT message into an accepted message or a dead letter, without the database.

Checks that need the registry (unknown device, wrong project, gateway sources) happen at
flush time in :mod:`ingest.writer`, so a database outage never turns into dead letters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ValidationError

from smartsite.protocol import limits
from smartsite.protocol.messages import MODELS
from smartsite.protocol.topics import HUB_TO_DEVICE, Kind, Topic, TopicError, parse


class Reason(StrEnum):
    WRONG_TOPIC = "wrong_topic"
    OVERSIZE = "oversize"
    MALFORMED_JSON = "malformed_json"
    SCHEMA_MISMATCH = "schema_mismatch"
    DEVICE_MISMATCH = "device_mismatch"
    NOT_JPEG = "not_jpeg"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_PROJECT = "wrong_project"
    UNKNOWN_SOURCE = "unknown_source"
    REJECTED_BY_DATABASE = "rejected_by_database"


@dataclass(slots=True)
class DeadLetter:
    topic: str
    reason_code: Reason
    reason: str
    payload: bytes
    payload_size: int
    project_id: str | None = None
    device_id: str | None = None


@dataclass(slots=True)
class Evidence:
    id: str
    data: bytes
    sha256: bytes


@dataclass(slots=True)
class Accepted:
    raw_topic: str
    raw: bytes  # kept so a registry check at flush time can still dead-letter it whole
    topic: Topic
    message: BaseModel | Evidence


def dead(
    topic: str, code: Reason, reason: str, payload: bytes, parsed: Topic | None = None
) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        reason_code=code,
        reason=reason,
        payload=payload[: limits.DEAD_LETTER_KEEP_BYTES],
        payload_size=len(payload),
        project_id=parsed.project if parsed else None,
        device_id=parsed.device if parsed else None,
    )


def _schema_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(prefix: str, topic: str, payload: bytes) -> Accepted | DeadLetter | None:
    """Validate one message; None for messages ingest ignores (the hub's own config and
    face gallery, retained under the device's topics)."""
    try:
        t = parse(prefix, topic)
    except TopicError as exc:
        return dead(topic, Reason.WRONG_TOPIC, str(exc), payload)
    if t.kind in HUB_TO_DEVICE:
        return None
    if t.kind is Kind.EVIDENCE:
        if len(payload) > limits.MAX_EVIDENCE_BYTES:
            return dead(
                topic,
                Reason.OVERSIZE,
                f"evidence is {len(payload)} bytes, limit {limits.MAX_EVIDENCE_BYTES}",
                payload,
                t,
            )
        if not payload.startswith(b"\xff\xd8\xff"):
            return dead(topic, Reason.NOT_JPEG, "evidence payload is not a JPEG image", payload, t)
        evidence = Evidence(t.evidence_id or "", payload, hashlib.sha256(payload).digest())
        return Accepted(topic, payload, t, evidence)
    if len(payload) > limits.MAX_JSON_BYTES:
        return dead(
            topic,
            Reason.OVERSIZE,
            f"message is {len(payload)} bytes, limit {limits.MAX_JSON_BYTES}",
            payload,
            t,
        )
    model = MODELS[t.kind]
    try:
        msg = model.model_validate_json(payload)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return dead(
                topic,
                Reason.MALFORMED_JSON,
                f"not valid JSON: {exc.errors()[0]['msg']}",
                payload,
                t,
            )
        return dead(
            topic,
            Reason.SCHEMA_MISMATCH,
            f"does not match the {t.kind.value} v1 schema: {_schema_error(exc)}",
            payload,
            t,
        )
    device = msg.device  # type: ignore[attr-defined]
    if device != t.device:
        return dead(
            topic,
            Reason.DEVICE_MISMATCH,
            f"payload device {device!r} is not the topic's device {t.device!r}",
            payload,
            t,
        )
    return Accepted(topic, payload, t, msg)
