"""MQTT protocol v1: topics, payloads and limits: the contract between edge and hub."""

from smartsite.protocol.limits import MAX_EVIDENCE_BYTES, MAX_JSON_BYTES, MAX_READINGS_PER_MESSAGE
from smartsite.protocol.messages import (
    MODELS,
    SCHEMA_VERSION,
    Attendance,
    Config,
    EdgeAlert,
    Event,
    Reading,
    Status,
    Telemetry,
    encode,
    json_schemas,
)
from smartsite.protocol.topics import DEFAULT_PREFIX, Kind, Topic, TopicError

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_EVIDENCE_BYTES",
    "MAX_JSON_BYTES",
    "MAX_READINGS_PER_MESSAGE",
    "MODELS",
    "SCHEMA_VERSION",
    "Attendance",
    "Config",
    "EdgeAlert",
    "Event",
    "Kind",
    "Reading",
    "Status",
    "Telemetry",
    "Topic",
    "TopicError",
    "encode",
    "json_schemas",
]
