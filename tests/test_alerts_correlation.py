"""Correlation of alerts with the permit, the BIM model, the enterprises and the worker, on
the real database; and through the engine, from real MQTT telemetry and edge alerts, stored
on the alert in the transaction that opens it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from api_helpers import uscc
from conftest import wait_until
from mqtt_helpers import publish_raw
from psycopg.types.json import Jsonb
from test_bim import model, needs_models

from alerts import correlate as cr
from alerts.engine import AlertEngine
from alerts.rules import Level
from bim import placement, store
from bim.models import DevicePlacementIn
from edge.simulator import gateway_id, register_site
from smartsite.db.registry import (
    EnterpriseIn,
    PermitIn,
    PersonIn,
    link_enterprise,
    upsert_enterprise,
    upsert_permit,
    upsert_person,
)
from smartsite.identifiers import id_check_digit
from smartsite.protocol.messages import EdgeAlert, Reading, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import Settings

PROJECT = "P-CORR"
GW = gateway_id(PROJECT)
CRANE = f"{PROJECT}-towercrane-001"
TODAY = date(2026, 6, 1)
KEY = b"test-key-0123456789-abcdefghijklmnopqrstuvwxyz"
ID_NUMBER = "11010519491231002" + id_check_digit("11010519491231002")


GC, SUB_C, SUB_OK, SUPERVISOR, BUILDER = (uscc(n) for n in range(1, 6))


@pytest.fixture
def site(db: psycopg.Connection, pg_url: str) -> psycopg.Connection:
    register_site(pg_url, PROJECT, 2, permit=False)  # each test sets the permit it needs
    return db


def subject(level: Level = Level.WARNING, **kw: object) -> cr.Subject:
    base: dict[str, object] = {
        "project_id": PROJECT,
        "device_id": CRANE,
        "rule": "crane_moment",
        "target": "moment_pct",
        "level": level,
        "on": TODAY,
    }
    return cr.Subject(**{**base, **kw})  # type: ignore[arg-type]


def permit(db: psycopg.Connection, number: str, **kw: object) -> None:
    upsert_permit(
        db,
        PermitIn(number=number, project_id=PROJECT, issued_on=date(2025, 1, 1), **kw),  # type: ignore[arg-type]
    )


def enterprise(
    db: psycopg.Connection,
    code: str,
    role: str,
    *,
    score: float = 90,
    grade: str = "A",
    black=False,
) -> None:
    upsert_enterprise(db, EnterpriseIn(uscc=code, name=f"enterprise {code[-4:]}"))
    # credit is the credit module's to compute; here it is set as that module would leave it
    db.execute(
        "UPDATE enterprises SET credit_score = %s, credit_grade = %s, blacklisted = %s "
        "WHERE uscc = %s",
        (score, grade, black, code),
    )
    link_enterprise(db, PROJECT, code, role)  # type: ignore[arg-type]


def names(c: cr.Correlated) -> list[str]:
    return [f.factor for f in c.factors]


# ---------------------------------------------------------------------------------- permit


@pytest.mark.parametrize(
    ("setup", "state"),
    [
        ({"expires_on": date(2027, 1, 1)}, "valid"),
        ({}, "valid"),  # no expiry date: valid until the registry says otherwise
        ({"expires_on": date(2026, 5, 31)}, "expired"),  # by the calendar
        ({"expires_on": date(2027, 1, 1), "status": "expired"}, "expired"),  # by the registry
        ({"status": "suspended"}, "suspended"),
        ({"status": "revoked"}, "revoked"),
        (None, "missing"),
    ],
)
def test_permit_state_flags_unpermitted_work_and_raises_the_level(
    site: psycopg.Connection, setup: dict[str, object] | None, state: str
) -> None:
    if setup is not None:
        permit(site, "PERMIT-0001", **setup)
    c = cr.correlate(site, subject())
    assert c.correlation.permit is not None and c.correlation.permit.state == state
    assert c.correlation.errors == []
    if state == "valid":
        assert (c.correlation.unpermitted_work, c.level, c.factors) == (False, Level.WARNING, ())
        assert c.correlation.permit.number == "PERMIT-0001"
        return
    assert c.correlation.unpermitted_work and c.level is Level.ALARM
    assert names(c) == ["unpermitted_work", "level_raised"]
    unpermitted, raised = c.factors
    assert (unpermitted.value, unpermitted.points) == (state, cr.UNPERMITTED_POINTS)
    assert state in unpermitted.note and "unpermitted work" in unpermitted.note
    assert raised.points == 30  # warning 30 → alarm 60, as the level factor counts them


def test_an_alarm_on_unpermitted_work_keeps_its_level_and_gains_the_factor(
    site: psycopg.Connection,
) -> None:
    c = cr.correlate(site, subject(Level.ALARM))
    assert c.level is Level.ALARM and names(c) == ["unpermitted_work"]


def test_a_renewed_permit_outranks_the_expired_one(site: psycopg.Connection) -> None:
    permit(site, "PERMIT-OLD", expires_on=date(2025, 12, 31), status="expired")
    upsert_permit(
        site,
        PermitIn(
            number="PERMIT-NEW",
            project_id=PROJECT,
            issued_on=date(2026, 1, 1),
            expires_on=date(2027, 12, 31),
        ),
    )
    c = cr.correlate(site, subject())
    assert c.correlation.permit is not None
    assert (c.correlation.permit.number, c.correlation.permit.state) == ("PERMIT-NEW", "valid")
    assert not c.correlation.unpermitted_work


# ----------------------------------------------------------------------------- enterprises


def test_blacklisted_and_low_credit_enterprises_raise_priority_with_factors(
    site: psycopg.Connection,
) -> None:
    permit(site, "PERMIT-0001")
    enterprise(site, GC, "general_contractor", black=True)
    enterprise(site, SUB_C, "subcontractor", score=75, grade="C")  # low by grade
    enterprise(site, SUB_OK, "subcontractor", score=88, grade="B")
    enterprise(site, SUPERVISOR, "supervisor", score=55, grade="B")  # low by score (< 60)
    enterprise(site, BUILDER, "builder", score=10, grade="D")  # the client: not counted
    c = cr.correlate(site, subject(), low_credit_score=60)
    got = {(e.role, e.uscc): e for e in c.correlation.enterprises}
    assert set(got) == {
        ("general_contractor", GC),
        ("subcontractor", SUB_C),
        ("subcontractor", SUB_OK),
        ("supervisor", SUPERVISOR),
    }
    gc = got[("general_contractor", GC)]
    assert (gc.credit_score, gc.credit_grade, gc.blacklisted) == (90.0, "A", True)
    assert [e.low_credit for e in c.correlation.enterprises] == [False, True, False, True]
    assert c.level is Level.WARNING  # credit weighs on priority, not on the level
    assert [(f.factor, f.value, f.points) for f in c.factors] == [
        ("enterprise_blacklisted", GC, cr.BLACKLISTED_POINTS),
        ("enterprise_low_credit", SUB_C, cr.LOW_CREDIT_POINTS),
        ("enterprise_low_credit", SUPERVISOR, cr.LOW_CREDIT_POINTS),
    ]
    assert "blacklisted" in c.factors[0].note and "grade C" in c.factors[1].note
    # a stricter threshold makes the B-graded subcontractor low too, within the cap
    stricter = cr.correlate(site, subject(), low_credit_score=90)
    assert sum(f.points for f in stricter.factors) == cr.MAX_ENTERPRISE_POINTS


# ------------------------------------------------------------------------------------- BIM


@needs_models
def test_a_device_placed_on_a_bim_space_gives_storey_and_space(site: psycopg.Connection) -> None:
    store.import_model(site, PROJECT, model("duplex.ifc"))
    gid = site.execute(
        "SELECT n.global_id FROM bim_nodes n JOIN bim_models m ON m.id = n.model_id "
        "WHERE m.project_id = %s AND n.kind = 'space' AND n.name = 'A102'",
        (PROJECT,),
    ).fetchone()
    assert gid is not None
    placement.place_device(
        site, DevicePlacementIn(project_id=PROJECT, device_id=CRANE, target_id=gid[0])
    )
    bim = cr.correlate(site, subject()).correlation.bim
    assert bim is not None and (bim.status, bim.via, bim.model_version) == ("resolved", "device", 1)
    assert bim.storey is not None and bim.storey.name == "Level 1"
    assert bim.space is not None and (bim.space.name, bim.space.global_id) == ("A102", gid[0])
    assert bim.building is not None and bim.building.ifc_class == "IfcBuilding"


def test_without_a_model_the_bim_status_says_so(site: psycopg.Connection) -> None:
    bim = cr.correlate(site, subject()).correlation.bim
    assert bim is not None and bim.status == "no_model" and bim.device_id == CRANE


# ---------------------------------------------------------------------------------- worker


def worker(db: psycopg.Connection) -> None:
    enterprise(db, SUB_OK, "subcontractor")
    upsert_person(
        db,
        PersonIn(
            id="w-001", name="张三", id_number=ID_NUMBER, employer_uscc=SUB_OK, trade="rigger"
        ),  # type: ignore[arg-type]
        KEY,
    )
    db.execute(
        "INSERT INTO certificates (person_id, type, number, issued_on, expires_on) VALUES "
        "('w-001', 'special_operations:signaller', 'SO-1', '2020-01-01', '2026-01-01'), "
        "('w-001', 'safety_training', 'ST-1', '2025-01-01', NULL)"
    )
    db.execute(
        "INSERT INTO zone_certificate_requirements VALUES (%s, 'crane', %s), (%s, 'crane', %s)",
        (PROJECT, "special_operations:signaller", PROJECT, "safety_training"),
    )


def event(db: psycopg.Connection, worker_id: str | None) -> uuid.UUID:
    """A stored track event whose face match names ``worker_id``."""
    eid = uuid.uuid4()
    face = {"worker_id": worker_id, "similarity": 0.9}
    db.execute(
        "INSERT INTO events (time, project_id, device_id, camera, event_id, type, track_id, "
        "label, score, box, zones, attributes, message_id) VALUES (now(), %s, %s, 'cam-1', %s, "
        "'update', 1, 'person', 0.9, '{0,0,1,1}', '{crane}', %s, %s)",
        (PROJECT, GW, eid, Jsonb({"hard_hat": False, "face": face}), uuid.uuid4()),
    )
    return eid


def test_worker_record_with_an_expired_certificate_required_in_the_zone(
    site: psycopg.Connection,
) -> None:
    permit(site, "PERMIT-0001")
    worker(site)
    c = cr.correlate(site, subject(rule="no_hard_hat", zone="crane", event_id=event(site, "w-001")))
    w = c.correlation.worker
    assert c.correlation.worker_id == "w-001" and w is not None
    assert (w.name, w.employer_uscc, w.trade) == ("张三", SUB_OK, "rigger")
    assert w.id_number_masked != ID_NUMBER and w.id_number_masked.endswith(ID_NUMBER[-4:])
    assert ID_NUMBER not in json.dumps(c.correlation.model_dump(mode="json"))
    assert {(x.type, x.valid) for x in w.certificates} == {
        ("special_operations:signaller", False),
        ("safety_training", True),
    }
    assert w.missing_certificates == ["special_operations:signaller"]
    assert names(c) == ["certificate_missing"]
    # outside the zone nothing is required of them
    elsewhere = cr.correlate(site, subject(worker_id="w-001", zone="gate"))
    assert elsewhere.correlation.worker is not None
    assert elsewhere.correlation.worker.missing_certificates == [] and elsewhere.factors == ()


def test_an_unknown_face_or_unenrolled_worker_leaves_no_record(site: psycopg.Connection) -> None:
    permit(site, "PERMIT-0001")
    c = cr.correlate(site, subject(event_id=event(site, None)))
    assert (c.correlation.worker_id, c.correlation.worker) == (None, None)
    c = cr.correlate(site, subject(worker_id="w-404"))
    assert (c.correlation.worker_id, c.correlation.worker, c.correlation.errors) == (
        "w-404",
        None,
        [],
    )


# -------------------------------------------------------------------------------- failures


def test_a_failing_part_is_noted_and_the_rest_still_counts(
    site: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    enterprise(site, GC, "general_contractor", black=True)

    def broken(conn: psycopg.Connection, *_: object) -> cr.PermitInfo:
        conn.execute("SELECT no_such_column FROM permits")  # the database refuses it
        raise AssertionError("unreachable")

    monkeypatch.setattr(cr, "permit_of", broken)
    with site.transaction():  # as in the engine: inside the transaction opening the alert
        c = cr.correlate(site, subject())
        assert site.execute("SELECT 1").fetchone() == (1,)  # the transaction is still usable
    assert c.correlation.permit is None and not c.correlation.unpermitted_work
    assert len(c.correlation.errors) == 1 and c.correlation.errors[0].startswith("permit: ")
    assert names(c) == ["enterprise_blacklisted"] and c.correlation.bim is not None


# -------------------------------------------------------------------------- through the engine


@pytest.fixture
def start_engine(pg_url: str, broker, settings: Settings) -> Iterator[Callable[[], AlertEngine]]:  # type: ignore[no-untyped-def]
    s = settings.model_copy(
        update={
            "alerts_name": f"alerts-{uuid.uuid4().hex[:8]}",
            "alerts_tick_seconds": 0.1,
            "alerts_batch_seconds": 0.02,
            "alerts_startup_grace_seconds": 0.0,
            "alerts_rules_refresh_seconds": 0.2,
        }
    )
    started: list[AlertEngine] = []

    def start() -> AlertEngine:
        e = AlertEngine(pg_url, broker.endpoint, s).start()
        e.wait_connected()
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


class Publisher:
    def __init__(self, broker, settings: Settings) -> None:  # type: ignore[no-untyped-def]
        self.endpoint, self.prefix, self.seq = broker.endpoint, settings.topic_prefix, 0
        self.t = datetime.now(UTC) - timedelta(seconds=30)

    def _next(self) -> datetime:
        self.seq += 1
        self.t += timedelta(seconds=0.5)
        return min(self.t, datetime.now(UTC))

    def moment(self, *values: float) -> None:
        msgs = []
        for v in values:
            ts = self._next()
            m = Telemetry(
                device=GW,
                seq=self.seq,
                ts=ts,
                readings=[Reading(metric="moment_pct", value=v, unit="%", source=CRANE)],
            )
            msgs.append((build(self.prefix, PROJECT, GW, Kind.TELEMETRY), encode(m)))
        publish_raw(self.endpoint, msgs)

    def no_hard_hat(self, zone: str, event_id: uuid.UUID) -> None:
        ts = self._next()
        m = EdgeAlert(
            device=GW,
            seq=self.seq,
            ts=ts,
            rule="no_hard_hat",  # type: ignore[arg-type]
            severity="warning",  # type: ignore[arg-type]
            camera="cam-1",
            zone=zone,
            event_id=event_id,
        )
        publish_raw(self.endpoint, [(build(self.prefix, PROJECT, GW, Kind.ALERT), encode(m))])


def stored(db: psycopg.Connection, rule: str) -> dict[str, object] | None:
    row = db.execute(
        "SELECT severity, priority, factors, correlation, unpermitted_work, worker_id, id "
        "FROM alerts WHERE rule = %s",
        (rule,),
    ).fetchone()
    keys = ("severity", "priority", "factors", "correlation", "unpermitted", "worker_id", "id")
    return dict(zip(keys, row, strict=True)) if row else None


def test_engine_stores_the_correlation_on_an_alert_from_mqtt_telemetry(
    site: psycopg.Connection, broker, settings: Settings, start_engine
) -> None:  # type: ignore[no-untyped-def]
    permit(site, "PERMIT-0001", expires_on=date.today() - timedelta(days=1))
    enterprise(site, GC, "general_contractor", black=True)
    start_engine()
    pub = Publisher(broker, settings)
    pub.moment(60, 92)  # a 预警 warning by the rule (90 %)
    wait_until(lambda: stored(site, "crane_moment") is not None, timeout=20, what="an alert")
    a = stored(site, "crane_moment")
    assert a is not None
    corr, factors = a["correlation"], a["factors"]
    assert isinstance(corr, dict) and isinstance(factors, list)
    assert a["severity"] == "alarm" and a["unpermitted"] is True  # raised: expired permit
    assert corr["permit"]["state"] == "expired" and corr["permit"]["number"] == "PERMIT-0001"
    assert corr["enterprises"][0]["uscc"] == GC and corr["enterprises"][0]["blacklisted"]
    assert corr["bim"]["status"] == "no_model" and corr["errors"] == []
    assert [f["factor"] for f in factors] == [
        "level",
        "exceedance",
        "unpermitted_work",
        "level_raised",
        "enterprise_blacklisted",
    ]
    opened = a["priority"]
    assert opened == sum(f["points"] for f in factors) > 30 + 15 + 30
    outbox = site.execute("SELECT payload FROM alert_outbox WHERE action = 'open'").fetchone()
    assert outbox is not None
    assert (outbox[0]["level"], outbox[0]["priority"]) == ("alarm", a["priority"])

    # the rule escalates on its own: its factors replace the opening ones, correlation's stay
    pub.moment(101)
    wait_until(
        lambda: (
            (stored(site, "crane_moment") or {}).get("factors", [{}])[0].get("value")  # type: ignore[union-attr]
            == "alarm"
        ),
        timeout=20,
        what="the escalation",
    )
    a = stored(site, "crane_moment")
    assert a is not None and isinstance(a["factors"], list)
    assert [f["factor"] for f in a["factors"]] == [
        "level",
        "exceedance",
        "unpermitted_work",
        "enterprise_blacklisted",
    ]
    # priority never drops while the alert is active
    assert a["priority"] == max(opened, sum(f["points"] for f in a["factors"]))  # type: ignore[call-overload]


def test_engine_correlates_an_edge_alert_with_the_recognised_worker(
    site: psycopg.Connection, broker, settings: Settings, start_engine
) -> None:  # type: ignore[no-untyped-def]
    permit(site, "PERMIT-0001")
    worker(site)
    eid = event(site, "w-001")  # ingest stored the track event before the alert came
    start_engine()
    Publisher(broker, settings).no_hard_hat("crane", eid)
    wait_until(lambda: stored(site, "no_hard_hat") is not None, timeout=20, what="an alert")
    a = stored(site, "no_hard_hat")
    assert a is not None and isinstance(a["correlation"], dict)
    assert a["worker_id"] == "w-001" and a["unpermitted"] is False
    assert a["severity"] == "warning"
    w = a["correlation"]["worker"]
    assert w["missing_certificates"] == ["special_operations:signaller"]
    assert "certificate_missing" in [f["factor"] for f in a["factors"]]  # type: ignore[union-attr]
    # and the missing certificate is its own alert, per worker and zone, an alarm at once
    wait_until(lambda: stored(site, "worker_certificate") is not None, what="certificate alert")
    row = site.execute(
        "SELECT target, severity, worker_id, detail, event_id FROM alerts "
        "WHERE rule = 'worker_certificate'"
    ).fetchone()
    assert row is not None and row[:3] == ("w-001/crane", "alarm", "w-001")
    assert "special_operations:signaller" in row[3] and row[4] == eid


def test_a_worker_with_valid_certificates_raises_no_certificate_alert(
    site: psycopg.Connection, broker, settings: Settings, start_engine
) -> None:  # type: ignore[no-untyped-def]
    permit(site, "PERMIT-0001")
    worker(site)
    site.execute("UPDATE certificates SET expires_on = NULL")
    engine = start_engine()
    Publisher(broker, settings).no_hard_hat("crane", event(site, "w-001"))
    wait_until(lambda: engine.stats.received >= 1, timeout=20, what="the alert judged")
    wait_until(lambda: stored(site, "no_hard_hat") is not None, timeout=20, what="an alert")
    assert stored(site, "worker_certificate") is None
    w = stored(site, "no_hard_hat")["correlation"]["worker"]  # type: ignore[index]
    assert w["missing_certificates"] == [] and w["required_certificates"] != []


def test_a_correlation_that_fails_whole_never_blocks_the_alert(
    site: psycopg.Connection,
    broker,
    settings: Settings,
    start_engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    def boom(*_: object, **__: object) -> cr.Correlated:
        raise RuntimeError("correlation bug")

    monkeypatch.setattr(cr, "correlate", boom)
    start_engine()
    Publisher(broker, settings).moment(92)
    wait_until(lambda: stored(site, "crane_moment") is not None, timeout=20, what="an alert")
    a = stored(site, "crane_moment")
    assert a is not None and a["severity"] == "warning" and isinstance(a["correlation"], dict)
    assert a["correlation"]["errors"] == ["correlation: RuntimeError: correlation bug"]
