"""Protocol v1: topics, payload validation as the hub applies it (JSON), and the published
JSON Schemas."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from smartsite.cli import app
from smartsite.protocol import limits
from smartsite.protocol.messages import (
    MODELS,
    Attendance,
    Attributes,
    Config,
    EdgeAlert,
    Event,
    FaceGallery,
    FaceMatch,
    Reading,
    Status,
    Telemetry,
    Threshold,
    TrackedObject,
    Zone,
    encode,
    json_schemas,
)
from smartsite.protocol.topics import (
    DEFAULT_PREFIX,
    HUB_TO_DEVICE,
    Kind,
    Topic,
    TopicError,
    build,
    parse,
)
from smartsite.settings import get_settings

P = DEFAULT_PREFIX
TS = datetime(2026, 5, 1, 8, 30, 15, 123000, tzinfo=UTC)
DEVICE_KINDS = [k for k in MODELS if k not in HUB_TO_DEVICE]

# --- topics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_topic_round_trip_for_every_kind(kind: Kind) -> None:
    evidence_id = "snap_0042.a-1" if kind is Kind.EVIDENCE else None
    topic = build(P, "BJ-2026.001", "gw_01", kind, evidence_id)
    expected = f"{P}/BJ-2026.001/gw_01/{kind.value}" + (f"/{evidence_id}" if evidence_id else "")
    assert topic == expected
    assert parse(P, topic) == Topic("BJ-2026.001", "gw_01", kind, evidence_id)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("other/v1/P1/gw/telemetry", "is not under 'smartsite/v1'"),
        ("smartsite/v10/P1/gw/telemetry", "is not under 'smartsite/v1'"),
        ("smartsite/v1", "is not under 'smartsite/v1'"),
        ("smartsite/v1/P1/gw", "must be smartsite/v1/<project>/<device>/<kind>"),
        ("smartsite/v1/P1/+/telemetry", "device '+' must match"),
        ("smartsite/v1/#/gw/telemetry", "project '#' must match"),
        ("smartsite/v1//gw/telemetry", "project '' must match"),
        ("smartsite/v1/P1/gw 1/telemetry", "device 'gw 1' must match"),
        (f"smartsite/v1/P1/{'d' * 65}/telemetry", f"device '{'d' * 65}' must match"),
        ("smartsite/v1/P1/gw/selfie", "unknown kind 'selfie'"),
        ("smartsite/v1/P1/gw/Telemetry", "unknown kind 'Telemetry'"),
        ("smartsite/v1/P1/gw/evidence", "must end with /evidence/<evidence id>"),
        ("smartsite/v1/P1/gw/evidence/a+b", "evidence id 'a+b' must match"),
        ("smartsite/v1/P1/gw/evidence/", "evidence id '' must match"),
        ("smartsite/v1/P1/gw/telemetry/extra", "extra levels after 'telemetry'"),
        ("smartsite/v1/P1/gw/status/x", "extra levels after 'status'"),
        ("smartsite/v1/P1/gw/evidence/a/b", "must be smartsite/v1/<project>/<device>/<kind>"),
    ],
)
def test_parse_refuses_topics_outside_the_protocol(topic: str, message: str) -> None:
    with pytest.raises(TopicError) as err:
        parse(P, topic)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("project", "device", "kind", "evidence_id", "message"),
    [
        ("P+1", "gw", Kind.TELEMETRY, None, "project 'P+1' must match"),
        ("P1", "gw/2", Kind.TELEMETRY, None, "device 'gw/2' must match"),
        ("P1", "#", Kind.STATUS, None, "device '#' must match"),
        ("P1", "gw", Kind.EVIDENCE, None, "evidence topics need an evidence id"),
        ("P1", "gw", Kind.EVIDENCE, "a/b", "evidence id 'a/b' must match"),
    ],
)
def test_build_refuses_segments_that_would_break_the_topic(
    project: str, device: str, kind: Kind, evidence_id: str | None, message: str
) -> None:
    with pytest.raises(TopicError) as err:
        build(P, project, device, kind, evidence_id)
    assert message in str(err.value)


def test_topic_segment_of_64_characters_is_the_longest_allowed() -> None:
    device = "d" * 64
    assert parse(P, build(P, "P1", device, Kind.STATUS)).device == device


# --- messages -------------------------------------------------------------------------------


def _tracked() -> TrackedObject:
    return TrackedObject(
        label="person",
        score=0.91,
        box=(0.1, 0.2, 0.35, 0.9),
        zones=["pit-edge"],
        attributes=Attributes(
            hard_hat=False, vest=True, face=FaceMatch(worker_id="w-17", similarity=0.62)
        ),
    )


SAMPLES: dict[Kind, Callable[[], BaseModel]] = {
    Kind.TELEMETRY: lambda: Telemetry(
        device="gw",
        ts=TS,
        seq=7,
        readings=[
            Reading(metric="moment_pct", value=87.5, unit="%", source="crane-1"),
            Reading(metric="pm10", value=-0.0, unit="ug/m3", time=TS),
        ],
    ),
    Kind.EVENT: lambda: Event(
        device="nvr-1",
        ts=TS,
        seq=0,
        type="update",
        event_id=uuid.uuid4(),
        camera="cam-3",
        track_id=12,
        start_time=TS,
        before=_tracked(),
        after=_tracked(),
        evidence_id="ev-1",
    ),
    Kind.ATTENDANCE: lambda: Attendance(
        device="gate-1", ts=TS, seq=3, worker_id="w-17", similarity=0.71, direction="in"
    ),
    Kind.ALERT: lambda: EdgeAlert(
        device="nvr-1",
        ts=TS,
        seq=4,
        rule="no_hard_hat",
        severity="alarm",
        camera="cam-3",
        detail="未戴安全帽",
    ),
    Kind.STATUS: lambda: Status(device="gw", ts=TS, seq=0, state="offline", detail={"v": "1.2"}),
    Kind.CONFIG: lambda: Config(
        device="nvr-1",
        ts=TS,
        zones=[
            Zone(
                id="pit",
                name="基坑",
                type="danger",
                camera="cam-3",
                polygon=[(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)],
                required_ppe=["hard_hat"],
            )
        ],
        thresholds={"moment_pct": Threshold(warning=90, alarm=100)},
        models={"ppe": "ab" * 32},
    ),
    Kind.GALLERY: lambda: FaceGallery(
        device="gate-1",
        project="p-1",
        ts=TS,
        version="cd" * 32,
        model_sha256="ef" * 32,
        workers={"w-17": [0.25] * 16},
    ),
}


def test_every_message_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(MODELS)


@pytest.mark.parametrize("kind", list(MODELS))
def test_encode_then_decode_gives_the_same_message(kind: Kind) -> None:
    msg = SAMPLES[kind]()
    wire = encode(msg)
    assert b'", "' not in wire and b'": ' not in wire  # compact JSON
    assert json.loads(wire)["kind"] == kind.value
    assert MODELS[kind].model_validate_json(wire) == msg


def _telemetry_json() -> dict[str, Any]:
    return json.loads(encode(SAMPLES[Kind.TELEMETRY]()))


def _event_json() -> dict[str, Any]:
    return json.loads(encode(SAMPLES[Kind.EVENT]()))


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        for key in path[:-1]:
            d = d[key]  # type: ignore[index]
        d[path[-1]] = value  # type: ignore[index]

    return apply


def _readings(n: int) -> Callable[[dict[str, Any]], None]:
    return _set(("readings",), [{"metric": "pm10", "value": 1.0, "unit": "u"}] * n)


@pytest.mark.parametrize(
    ("sample", "change", "loc", "error_type"),
    [
        (_telemetry_json, _set(("colour",), "red"), ("colour",), "extra_forbidden"),
        (
            _telemetry_json,
            _set(("readings", 0, "colour"), "red"),
            ("readings", 0, "colour"),
            "extra_forbidden",
        ),
        (_telemetry_json, _set(("readings", 0, "value"), float("nan")), None, "value_error"),
        (_telemetry_json, _set(("readings", 0, "value"), float("inf")), None, "value_error"),
        (_telemetry_json, _set(("readings", 0, "value"), float("-inf")), None, "value_error"),
        (_telemetry_json, _set(("seq",), -1), ("seq",), "greater_than_equal"),
        (_telemetry_json, _set(("ts",), "2026-05-01T08:30:15"), ("ts",), "timezone_aware"),
        (
            _telemetry_json,
            _set(("readings", 0, "time"), "2026-05-01T08:30:15"),
            ("readings", 0, "time"),
            "timezone_aware",
        ),
        (_telemetry_json, _readings(0), ("readings",), "too_short"),
        (
            _telemetry_json,
            _readings(limits.MAX_READINGS_PER_MESSAGE + 1),
            ("readings",),
            "too_long",
        ),
        (_telemetry_json, _set(("device",), "gw/2"), ("device",), "string_pattern_mismatch"),
        (_telemetry_json, _set(("v",), 2), ("v",), "literal_error"),
        (_event_json, _set(("after", "box", 2), 1.2), ("after", "box", 2), "less_than_equal"),
        (
            _event_json,
            _set(("after", "box", 0), -0.01),
            ("after", "box", 0),
            "greater_than_equal",
        ),
        (_event_json, _set(("after", "score"), 1.5), ("after", "score"), "less_than_equal"),
    ],
)
def test_hub_refuses_invalid_payloads(
    sample: Callable[[], dict[str, Any]],
    change: Callable[[dict[str, Any]], None],
    loc: tuple[str | int, ...] | None,
    error_type: str,
) -> None:
    payload = sample()
    change(payload)
    wire = json.dumps(payload)  # NaN and Infinity as Python writes them into JSON
    model = Telemetry if payload["kind"] == "telemetry" else Event
    with pytest.raises(ValidationError) as err:
        model.model_validate_json(wire)
    errors = err.value.errors()
    assert len(errors) == 1, errors
    assert errors[0]["type"] == error_type
    if loc is None:  # non-finite reading values
        assert errors[0]["loc"] == ("readings", 0, "value")
        assert "finite" in errors[0]["msg"]
    else:
        assert errors[0]["loc"] == loc


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_json_literals_are_refused(literal: str) -> None:
    wire = json.dumps(_telemetry_json()).replace('"value": 87.5', f'"value": {literal}')
    assert literal in wire
    with pytest.raises(ValidationError, match="must be a finite number"):
        Telemetry.model_validate_json(wire)


def test_a_full_batch_of_readings_is_accepted() -> None:
    payload = _telemetry_json()
    _readings(limits.MAX_READINGS_PER_MESSAGE)(payload)
    msg = Telemetry.model_validate_json(json.dumps(payload))
    assert len(msg.readings) == limits.MAX_READINGS_PER_MESSAGE


# --- JSON Schemas for integrators -------------------------------------------------------------


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("SMARTSITE_TOPIC_PREFIX", "SMARTSITE_EMBEDDED_BROKER"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_protocol_schema_command_writes_one_schema_per_kind(
    tmp_path: Path, clean_settings: None
) -> None:
    out = tmp_path / "schema"
    result = CliRunner().invoke(app, ["protocol", "schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert names == {f"{k.value}.schema.json" for k in MODELS} | {"contract.json"}
    assert f"wrote {len(names)} files" in result.output
    for kind in MODELS:
        schema = json.loads((out / f"{kind.value}.schema.json").read_text(encoding="utf-8"))
        assert schema["type"] == "object"
        assert schema["properties"]["kind"]["const"] == kind.value
        if kind not in HUB_TO_DEVICE:
            assert {"id", "device", "ts", "seq"} <= set(schema["required"]), kind
    contract = json.loads((out / "contract.json").read_text())
    assert contract["prefix"] == DEFAULT_PREFIX
    assert contract["limits"]["MAX_JSON_BYTES"] == limits.MAX_JSON_BYTES
    assert contract["limits"]["MAX_READINGS_PER_MESSAGE"] == limits.MAX_READINGS_PER_MESSAGE


REQUIRED = [
    (kind, field) for kind in DEVICE_KINDS for field in json_schemas()[kind.value]["required"]
]


@pytest.mark.parametrize(("kind", "field"), REQUIRED, ids=[f"{k}-{f}" for k, f in REQUIRED])
def test_a_field_the_schema_requires_is_required_by_the_hub(kind: Kind, field: str) -> None:
    """An integrator following the schema and the hub agree: without it, the hub refuses."""
    payload = json.loads(encode(SAMPLES[kind]()))
    del payload[field]
    with pytest.raises(ValidationError):
        MODELS[kind].model_validate_json(json.dumps(payload))


def test_a_message_without_its_id_is_not_given_a_new_one() -> None:
    """A made-up id would make every redelivery of the same message a new message."""
    payload = _telemetry_json()
    del payload["id"]
    with pytest.raises(ValidationError, match="must carry id"):
        Telemetry.model_validate_json(json.dumps(payload))
