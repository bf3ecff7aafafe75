"""simulator → mosquitto → ingest → PostgreSQL, exactly once, with bad input dead-lettered."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import count, wait_until
from mqtt_helpers import publish_raw

from edge.simulator import SiteModel, register_site, run
from ingest.writer import missing_sequences
from smartsite.protocol import limits
from smartsite.protocol.messages import (
    Attendance,
    Attributes,
    EdgeAlert,
    Event,
    FaceMatch,
    Reading,
    Telemetry,
    TrackedObject,
    encode,
)
from smartsite.protocol.topics import Kind, build

PROJECT = "P-INGEST"


def telemetry_topic(settings, device: str, project: str = PROJECT) -> str:  # type: ignore[no-untyped-def]
    return build(settings.topic_prefix, project, device, Kind.TELEMETRY)


def good(seq: int, device: str = f"{PROJECT}-gw", value: float = 1.0) -> Telemetry:
    return Telemetry(
        device=device,
        seq=seq,
        readings=[Reading(metric="pm10", value=value, unit="ug/m3", source=f"{PROJECT}-dust-005")],
    )


def test_simulated_site_arrives_exactly_once(db, pg_url, broker, settings, start_worker) -> None:
    register_site(pg_url, PROJECT, 12)
    start_worker(pg_url, broker.endpoint)
    res = run(
        broker.endpoint, settings.topic_prefix, PROJECT, 12, rate=20, seconds=10, realtime=False
    )
    assert res.messages > 1000
    wait_until(
        lambda: count(db, "SELECT count(*) FROM telemetry") >= res.readings,
        what="all readings stored",
    )
    stored_ids = {r[0] for r in db.execute("SELECT DISTINCT message_id FROM telemetry")}
    assert stored_ids == set(res.ids)
    assert count(db, "SELECT count(*) FROM telemetry") == res.readings
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    # readings are attributed to the sensors behind the gateway, not to the gateway
    kinds = {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT d.kind FROM telemetry t JOIN devices d ON d.id = t.device_id"
        )
    }
    assert kinds == {"tower_crane", "hoist", "foundation_pit", "high_formwork", "dust", "noise"}
    # retained online status and the gateway's sequence numbers
    wait_until(
        lambda: count(db, "SELECT count(*) FROM device_status WHERE state = 'offline'") == 1,
        what="offline status",
    )
    assert missing_sequences(db, timedelta(hours=1)) == {}
    last_seq = count(db, "SELECT last_seq FROM devices WHERE id = %s", f"{PROJECT}-gw")
    assert last_seq == res.messages + 2  # online status, telemetry, offline status


def test_redelivered_messages_are_stored_once(db, pg_url, broker, settings, start_worker) -> None:
    register_site(pg_url, PROJECT, 6)
    worker = start_worker(pg_url, broker.endpoint)
    model = SiteModel(PROJECT, 6, seed=3)
    msgs = [m for t in range(50) for m in model.tick(float(t))]
    batch = [(telemetry_topic(settings, m.device), encode(m)) for m in msgs]
    readings = sum(len(m.readings) for m in msgs)
    publish_raw(broker.endpoint, batch)
    wait_until(lambda: worker.stats.written["telemetry"] >= readings, what="first delivery")
    publish_raw(broker.endpoint, batch + batch[:10])  # outbox replay, then QoS 1 redelivery
    wait_until(lambda: worker.stats.duplicates >= len(msgs) + 10, what="duplicates absorbed")
    assert count(db, "SELECT count(*) FROM telemetry") == readings
    assert count(db, "SELECT count(DISTINCT message_id) FROM telemetry") == len(msgs)
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


def test_two_workers_share_the_load_exactly_once(
    db, pg_url, broker, settings, start_worker
) -> None:
    register_site(pg_url, PROJECT, 6)
    a = start_worker(pg_url, broker.endpoint, name="a", shared_group="ingest")
    b = start_worker(pg_url, broker.endpoint, name="b", shared_group="ingest")
    res = run(
        broker.endpoint, settings.topic_prefix, PROJECT, 6, rate=50, seconds=10, realtime=False
    )
    wait_until(lambda: count(db, "SELECT count(*) FROM telemetry") >= res.readings, what="readings")
    # online status + telemetry + offline status, each received by exactly one of the two
    wait_until(lambda: a.stats.received + b.stats.received == res.messages + 2, what="stats")
    assert a.stats.received > 0 and b.stats.received > 0, "the shared subscription split nothing"
    assert count(db, "SELECT count(*) FROM telemetry") == res.readings


def _bad_inputs(settings) -> list[tuple[str, str, bytes, str]]:  # type: ignore[no-untyped-def]
    """(reason code, topic, payload, text expected in the reason)."""
    gw = f"{PROJECT}-gw"
    p = settings.topic_prefix
    ok = encode(good(1))
    schema_bad = json.loads(ok)
    schema_bad["readings"][0]["value"] = "high"
    nul = encode(
        Telemetry(device=gw, seq=5, readings=[Reading(metric="pm10", value=1, unit="a\x00b")])
    )
    return [
        (
            "unknown_device",
            telemetry_topic(settings, "ghost-01"),
            encode(good(1, device="ghost-01")),
            "'ghost-01' is not registered",
        ),
        ("wrong_topic", f"{p}/{PROJECT}/{gw}/telemetry/extra", ok, "extra levels"),
        ("wrong_topic", f"{p}/{PROJECT}/{gw}/selfie", ok, "unknown kind 'selfie'"),
        (
            "malformed_json",
            telemetry_topic(settings, gw),
            b'{"v": 1, "readings": [',
            "not valid JSON",
        ),
        (
            "schema_mismatch",
            telemetry_topic(settings, gw),
            json.dumps(schema_bad).encode(),
            "readings.0.value",
        ),
        (
            "oversize",
            telemetry_topic(settings, gw),
            b" " * (limits.MAX_JSON_BYTES + 1),
            f"limit {limits.MAX_JSON_BYTES}",
        ),
        (
            "device_mismatch",
            telemetry_topic(settings, f"{PROJECT}-dust-005"),
            ok,
            "is not the topic's device",
        ),
        (
            "wrong_project",
            telemetry_topic(settings, gw, project="OTHER"),
            ok,
            "belongs to project 'P-INGEST'",
        ),
        (
            "unknown_source",
            telemetry_topic(settings, gw),
            encode(
                Telemetry(
                    device=gw,
                    seq=2,
                    readings=[Reading(metric="x", value=1, unit="", source="P-ELSEWHERE-1")],
                )
            ),
            "not a device behind gateway",
        ),
        ("not_jpeg", build(p, PROJECT, gw, Kind.EVIDENCE, "ev1"), b"GIF89a...", "not a JPEG"),
        ("rejected_by_database", telemetry_topic(settings, gw), nul, "the database refused it"),
    ]


def test_bad_inputs_are_dead_lettered_and_good_ones_kept(
    db, pg_url, broker, settings, start_worker
) -> None:
    register_site(pg_url, PROJECT, 6)
    worker = start_worker(pg_url, broker.endpoint)
    bad = _bad_inputs(settings)
    gw = f"{PROJECT}-gw"
    stream: list[tuple[str, bytes]] = []
    for i, (_code, topic, payload, _text) in enumerate(bad):
        stream.append((telemetry_topic(settings, gw), encode(good(100 + i))))
        stream.append((topic, payload))
    stream.append((telemetry_topic(settings, gw), encode(good(999))))
    publish_raw(broker.endpoint, stream)
    wait_until(
        lambda: (
            count(db, "SELECT count(*) FROM dead_letters") >= len(bad)
            and count(db, "SELECT count(*) FROM telemetry") >= len(bad) + 1
        ),
        what="dead letters and good messages",
    )
    rows = db.execute(
        "SELECT reason_code, reason, topic, payload, payload_size FROM dead_letters ORDER BY id"
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(code for code, *_ in bad)
    for code, topic, payload, text in bad:
        match = [r for r in rows if r[0] == code and r[2] == topic]
        assert match, f"no dead letter for {code} on {topic}"
        assert any(text in r[1] for r in match), f"{code}: reason {[r[1] for r in match]}"
        assert match[0][4] == len(payload)
        assert bytes(match[0][3]) == payload[: limits.DEAD_LETTER_KEEP_BYTES]
    assert count(db, "SELECT count(*) FROM telemetry") == len(bad) + 1
    # the worker counts them too (after the commit, so wait for it)
    wait_until(lambda: worker.stats.dead_lettered.total() == len(bad), what="dead-letter stats")


def test_events_attendance_alerts_and_evidence_are_stored(
    db, pg_url, broker, settings, start_worker
) -> None:
    register_site(pg_url, PROJECT, 1)
    start_worker(pg_url, broker.endpoint)
    gw, cam, p = f"{PROJECT}-gw", "cam-1", settings.topic_prefix
    now = datetime.now(UTC)
    event_id = uuid.uuid4()
    person = TrackedObject(
        label="person",
        score=0.9,
        box=(0.1, 0.2, 0.3, 0.9),
        zones=["pit"],
        attributes=Attributes(hard_hat=False, face=FaceMatch(similarity=0.2)),
    )
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9"
    msgs = [
        (
            Kind.EVENT,
            Event(
                device=gw,
                seq=1,
                type="new",
                event_id=event_id,
                camera=cam,
                track_id=7,
                start_time=now,
                after=person,
                evidence_id="ev-1",
            ),
        ),
        (
            Kind.ATTENDANCE,
            Attendance(
                device=gw, seq=2, worker_id="W-1", similarity=0.71, direction="in", camera=cam
            ),
        ),
        (
            Kind.ALERT,
            EdgeAlert(
                device=gw,
                seq=3,
                rule="no_hard_hat",
                severity="alarm",
                camera=cam,
                event_id=event_id,
                evidence_id="ev-1",
                detail="no hard hat in pit",
            ),
        ),
    ]
    publish_raw(
        broker.endpoint,
        [(build(p, PROJECT, gw, k), encode(m)) for k, m in msgs]
        + [(build(p, PROJECT, gw, Kind.EVIDENCE, "ev-1"), jpeg)] * 2,
    )
    wait_until(
        lambda: (
            count(db, "SELECT count(*) FROM evidence") == 1
            and count(db, "SELECT count(*) FROM edge_alerts") == 1
        ),
        what="all kinds stored",
    )
    ev = db.execute("SELECT label, zones, attributes, box FROM events").fetchone()
    assert ev == (
        "person",
        ["pit"],
        {"hard_hat": False, "face": {"similarity": 0.2}},
        [0.1, 0.2, 0.3, 0.9],
    )
    assert db.execute("SELECT worker_id, direction FROM attendance").fetchone() == ("W-1", "in")
    # the raw occurrence; alerts are the alert engine's (tests/test_alerts_engine.py)
    assert db.execute("SELECT rule, severity, camera, detail FROM edge_alerts").fetchone() == (
        "no_hard_hat",
        "alarm",
        cam,
        "no hard hat in pit",
    )
    assert count(db, "SELECT count(*) FROM alerts") == 0
    assert bytes(db.execute("SELECT data FROM evidence").fetchone()[0]) == jpeg


@pytest.mark.parametrize("protocol", [5, 4])
def test_worker_speaks_mqtt5_and_311(db, pg_url, broker, settings, start_worker, protocol) -> None:
    register_site(pg_url, PROJECT, 6)
    endpoint = broker.endpoint.model_copy(update={"protocol": protocol})
    worker = start_worker(pg_url, endpoint)
    publish_raw(endpoint, [(telemetry_topic(settings, f"{PROJECT}-gw"), encode(good(1)))])
    wait_until(lambda: worker.stats.written["telemetry"] == 1, what="stored")


def test_skipped_sequence_numbers_are_reported(db, pg_url, broker, settings, start_worker) -> None:
    register_site(pg_url, PROJECT, 6)
    worker = start_worker(pg_url, broker.endpoint)
    gw = f"{PROJECT}-gw"
    publish_raw(
        broker.endpoint, [(telemetry_topic(settings, gw), encode(good(s))) for s in (1, 2, 5, 6)]
    )
    wait_until(lambda: worker.stats.written["telemetry"] == 4, what="stored")
    assert missing_sequences(db, timedelta(hours=1)) == {gw: 2}  # 3 and 4 never arrived
    assert count(db, "SELECT last_seq FROM devices WHERE id = %s", gw) == 6


def test_units_with_copy_special_characters_survive(
    db, pg_url, broker, settings, start_worker
) -> None:
    register_site(pg_url, PROJECT, 6)
    worker = start_worker(pg_url, broker.endpoint)
    gw = f"{PROJECT}-gw"
    unit = "a\tb\\c\nd"
    msg = Telemetry(device=gw, seq=1, readings=[Reading(metric="odd", value=-1.5e-7, unit=unit)])
    publish_raw(broker.endpoint, [(telemetry_topic(settings, gw), encode(msg))])
    wait_until(lambda: worker.stats.written["telemetry"] == 1, what="stored")
    assert db.execute("SELECT unit, value FROM telemetry").fetchone() == (unit, -1.5e-7)


def test_graceful_stop_writes_what_it_holds(db, pg_url, broker, settings) -> None:
    """A worker told to stop mid-batch writes and acknowledges what it has before it goes."""
    from ingest.worker import IngestWorker

    register_site(pg_url, PROJECT, 6)
    slow = settings.model_copy(update={"ingest_batch_seconds": 30.0})  # nothing flushes by time
    worker = IngestWorker(pg_url, broker.endpoint, slow, name=f"stop-{slow.topic_prefix[:9]}")
    worker.start().wait_connected()
    gw = f"{PROJECT}-gw"
    publish_raw(
        broker.endpoint, [(telemetry_topic(settings, gw), encode(good(s))) for s in range(1, 51)]
    )
    wait_until(lambda: len(worker._buffer) == 50, what="messages buffered")
    assert count(db, "SELECT count(*) FROM telemetry") == 0
    worker.stop()
    assert count(db, "SELECT count(*) FROM telemetry") == 50
