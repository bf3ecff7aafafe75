"""Topic layout: ``{prefix}/{project}/{device}/{kind}`` and ``.../evidence/{evidence_id}``.

The device in the topic is the connection's identity (its broker username), so a broker
ACL of ``pattern write {prefix}/+/%u/#`` lets each device publish only under its own topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PREFIX = "smartsite/v1"
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SEGMENT_PATTERN = SEGMENT_RE.pattern


class Kind(StrEnum):
    """What a topic carries."""

    TELEMETRY = "telemetry"
    EVENT = "event"
    ATTENDANCE = "attendance"
    ALERT = "alert"
    EVIDENCE = "evidence"
    STATUS = "status"
    CONFIG = "config"
    GALLERY = "gallery"


HUB_TO_DEVICE = frozenset({Kind.CONFIG, Kind.GALLERY})
"""Retained kinds the hub writes under a device's topics and only that device reads."""
DEVICE_TO_HUB = frozenset(Kind) - HUB_TO_DEVICE


class TopicError(ValueError):
    """A topic that is not part of the protocol."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed protocol topic."""

    project: str
    device: str
    kind: Kind
    evidence_id: str | None = None


def check_segment(value: str, what: str) -> str:
    if not SEGMENT_RE.match(value):
        raise TopicError(f"{what} {value!r} must match {SEGMENT_PATTERN}")
    return value


def build(
    prefix: str, project: str, device: str, kind: Kind, evidence_id: str | None = None
) -> str:
    """The topic a device publishes ``kind`` on (or the hub publishes its config on)."""
    parts = [prefix, check_segment(project, "project"), check_segment(device, "device"), kind.value]
    if kind is Kind.EVIDENCE:
        if evidence_id is None:
            raise TopicError("evidence topics need an evidence id")
        parts.append(check_segment(evidence_id, "evidence id"))
    return "/".join(parts)


def parse(prefix: str, topic: str) -> Topic:
    """Parse a topic under ``prefix``; raise :class:`TopicError` saying what is wrong."""
    if not topic.startswith(prefix + "/"):
        raise TopicError(f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) not in (3, 4):
        raise TopicError(
            f"topic {topic!r} must be {prefix}/<project>/<device>/<kind>[/<evidence id>]"
        )
    project, device, kind_s = parts[:3]
    check_segment(project, "project")
    check_segment(device, "device")
    try:
        kind = Kind(kind_s)
    except ValueError:
        raise TopicError(f"unknown kind {kind_s!r} in {topic!r}") from None
    if kind is Kind.EVIDENCE:
        if len(parts) != 4:
            raise TopicError(f"evidence topic {topic!r} must end with /evidence/<evidence id>")
        return Topic(project, device, kind, check_segment(parts[3], "evidence id"))
    if len(parts) != 3:
        raise TopicError(f"topic {topic!r} has extra levels after {kind_s!r}")
    return Topic(project, device, kind)


def ingest_filter(prefix: str, shared_group: str | None) -> str:
    """The subscription that receives every device→hub message, optionally shared."""
    filt = f"{prefix}/+/+/#"
    return f"$share/{shared_group}/{filt}" if shared_group else filt
