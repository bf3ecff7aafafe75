"""Registry and credit API on the real database: project scope (another project reads as
absent), masked ID numbers, hidden device credentials, attendance by day, audited personal
reads by data-sharing keys, credit with its explanation, blacklist lift, scheduled recompute."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_helpers import id_number, login, project, uscc, user
from conftest import count, wait_until
from fastapi.testclient import TestClient
from pydantic import SecretStr

from alerts.credit_schedule import CreditRecomputer
from server.principal import KeyGrant
from server.users import create_api_key
from smartsite.db.registry import (
    DeviceIn,
    EnterpriseIn,
    PermitIn,
    PersonIn,
    link_enterprise,
    upsert_device,
    upsert_enterprise,
    upsert_permit,
    upsert_person,
)
from smartsite.identifiers import mask_id_number
from smartsite.secrets import secret_key
from smartsite.settings import Settings

GC, SUB, OTHER = uscc(1), uscc(2), uscc(3)
ID1, ID2 = id_number(121), id_number(342)
CREDENTIAL = "PBKDF2$sha512$100000$c2VjcmV0c2FsdA==$bm90LWEtcmVhbC1oYXNo"
TZ = ZoneInfo(Settings().alerts_timezone)


@pytest.fixture
def world(db: psycopg.Connection, settings: Settings) -> dict[str, Any]:
    """Two projects in two districts; P1 has enterprises, workers, a device, attendance."""
    key = secret_key(settings)
    project(db, "P1", "110105")
    project(db, "P2", "110108")
    for code, name in ((GC, "Great Build Co"), (SUB, "Small Sub Co"), (OTHER, "Far Away Co")):
        upsert_enterprise(db, EnterpriseIn(uscc=code, name=name))
    link_enterprise(db, "P1", GC, "general_contractor")
    link_enterprise(db, "P1", SUB, "subcontractor")
    link_enterprise(db, "P2", OTHER, "general_contractor")
    upsert_permit(db, PermitIn(number="110105202601", project_id="P1", issued_on=date(2026, 1, 5)))
    upsert_person(
        db,
        PersonIn(
            id="W1", name="Zhang San", id_number=SecretStr(ID1), employer_uscc=GC, trade="crane"
        ),
        key,
    )
    upsert_person(
        db, PersonIn(id="W2", name="Li Si", id_number=SecretStr(ID2), employer_uscc=OTHER), key
    )
    db.execute(
        "INSERT INTO project_workers (project_id, person_id, role)"
        " VALUES ('P1', 'W1', 'project_manager')"
    )
    db.execute("INSERT INTO project_workers (project_id, person_id) VALUES ('P2', 'W2')")
    today = datetime.now(TZ).date()
    db.execute(
        "INSERT INTO certificates (person_id, type, number, issued_on, expires_on) VALUES"
        " ('W1', 'special_operations:tower_crane_driver', 'T-001', %s, %s),"
        " ('W1', 'special_operations:signaller', 'S-002', %s, %s)",
        (
            today - timedelta(days=400),
            today + timedelta(days=300),
            today - timedelta(days=800),
            today - timedelta(days=1),
        ),
    )
    upsert_device(
        db,
        DeviceIn(id="P1-cam-1", project_id="P1", kind="camera", placement={"point": [1, 2, 3]}),
    )
    db.execute("UPDATE devices SET credential_hash = %s", (CREDENTIAL,))
    noon = datetime.combine(today, datetime.min.time(), tzinfo=TZ) + timedelta(hours=12)
    for t, worker, direction in (
        (noon - timedelta(hours=4), "W1", "in"),
        (noon + timedelta(hours=5), "W1", "out"),
        (noon - timedelta(hours=3), "ghost", "in"),
        (noon - timedelta(days=1), "W1", "in"),
    ):
        db.execute(
            "INSERT INTO attendance (time, project_id, device_id, worker_id, similarity,"
            " direction, message_id) VALUES (%s, 'P1', 'P1-cam-1', %s, 0.93, %s,"
            " gen_random_uuid())",
            (t, worker, direction),
        )
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "officer2", "officer", projects=["P2"])
    user(db, "admin1", "admin")
    user(db, "reg-city", "regulator")
    user(db, "reg-far", "regulator", district_code="110108")
    user(db, "gc-user", "enterprise", enterprise_uscc=GC)
    return {"today": today, "key": key}


RESOURCES = ("permits", "enterprises", "workers", "devices", "attendance")


def test_project_resources_are_the_callers_scope_and_others_read_as_absent(
    client: TestClient, world: dict[str, Any]
) -> None:
    officer = login(client, "officer1")
    for resource in RESOURCES:
        assert client.get(f"/api/projects/P1/{resource}", headers=officer).status_code == 200
        other = client.get(f"/api/projects/P2/{resource}", headers=officer)
        absent = client.get(f"/api/projects/NOPE/{resource}", headers=officer)
        assert other.status_code == absent.status_code == 404
        assert other.json() == absent.json()
        assert other.json()["error"]["code"] == "not_found"
    far = login(client, "reg-far")
    assert client.get("/api/projects/P1/workers", headers=far).status_code == 404
    assert client.get("/api/projects/P2/workers", headers=far).status_code == 200


def test_workers_show_masked_id_numbers_certificates_and_employer(
    client: TestClient, world: dict[str, Any]
) -> None:
    r = client.get("/api/projects/P1/workers", headers=login(client, "officer1"))
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 1
    (w,) = body["items"]
    assert w["person_id"] == "W1"
    assert w["name"] == "Zhang San"
    assert w["id_number_masked"] == mask_id_number(ID1)
    assert w["employer_name"] == "Great Build Co"
    assert w["role"] == "project_manager"
    assert w["status"] == "active"
    certs = {c["number"]: c for c in w["certificates"]}
    assert certs["T-001"]["expired"] is False
    assert certs["S-002"]["expired"] is True
    assert certs["T-001"]["type"] == "special_operations:tower_crane_driver"
    assert "id_number_hash" not in w and "id_number_encrypted" not in w


def test_no_response_ever_carries_a_full_id_number(
    client: TestClient, world: dict[str, Any]
) -> None:
    admin = login(client, "admin1")
    bodies = [
        client.get(f"/api/projects/{pid}/{resource}", headers=admin).text
        for pid in ("P1", "P2")
        for resource in RESOURCES
    ]
    bodies += [
        client.get("/api/workers/W1/credit", headers=admin).text,
        client.get("/api/workers/W2/credit", headers=admin).text,
        client.get("/api/enterprises", headers=admin).text,
    ]
    assert any(mask_id_number(ID1) in b for b in bodies)
    for full in (ID1, ID2):
        assert not any(full in b for b in bodies)


def test_devices_never_show_their_broker_credentials(
    client: TestClient, world: dict[str, Any]
) -> None:
    r = client.get("/api/projects/P1/devices", headers=login(client, "admin1"))
    assert r.status_code == 200
    assert CREDENTIAL not in r.text and "credential" not in r.text
    (d,) = r.json()
    assert d["id"] == "P1-cam-1"
    assert d["kind"] == "camera"
    assert d["active"] is True
    assert d["placement"] == {"point": [1, 2, 3]}


def test_permits_and_project_enterprises(client: TestClient, world: dict[str, Any]) -> None:
    officer = login(client, "officer1")
    (permit,) = client.get("/api/projects/P1/permits", headers=officer).json()
    assert permit["number"] == "110105202601"
    assert permit["status"] == "valid"
    rows = client.get("/api/projects/P1/enterprises", headers=officer).json()
    assert {(r["uscc"], r["role"]) for r in rows} == {
        (GC, "general_contractor"),
        (SUB, "subcontractor"),
    }
    assert all(r["credit_grade"] == "A" and r["blacklisted"] is False for r in rows)
    # An enterprise user sees the project, but only their own enterprise's credit.
    mine = client.get("/api/projects/P1/enterprises", headers=login(client, "gc-user")).json()
    by = {r["uscc"]: r for r in mine}
    assert by[GC]["credit_grade"] == "A"
    assert by[SUB]["credit_grade"] is None and by[SUB]["credit_score"] is None


def test_attendance_by_day_with_names_and_distinct_people(
    client: TestClient, world: dict[str, Any]
) -> None:
    officer = login(client, "officer1")
    r = client.get("/api/projects/P1/attendance", headers=officer)
    assert r.status_code == 200
    body = r.json()
    assert body["day"] == world["today"].isoformat()
    assert body["total"] == 3
    assert body["people"] == 2
    names = [(i["person_id"], i["person_name"], i["direction"]) for i in body["items"]]
    assert names == [("W1", "Zhang San", "in"), ("ghost", None, "in"), ("W1", "Zhang San", "out")]
    yesterday = (world["today"] - timedelta(days=1)).isoformat()
    r = client.get(f"/api/projects/P1/attendance?day={yesterday}", headers=officer)
    assert (r.json()["total"], r.json()["people"]) == (1, 1)
    r = client.get("/api/projects/P1/attendance?day=2026-13-01", headers=officer)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid"


def test_data_sharing_key_reads_of_personal_data_are_audited(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    full = create_api_key(db, world["key"], "bureau", KeyGrant(projects=["P1"]), by="test")
    key = {"X-API-Key": full}
    assert client.get("/api/projects/P1/workers", headers=key).status_code == 200
    assert client.get("/api/projects/P1/attendance", headers=key).status_code == 200
    assert client.get("/api/projects/P1/devices", headers=key).status_code == 200
    assert client.get("/api/projects/P2/workers", headers=key).status_code == 404
    rows = db.execute(
        "SELECT principal, role, method, path, resource, records FROM access_audit ORDER BY id"
    ).fetchall()
    # Every key request is audited (issue 8), personal data or not, found or not.
    assert rows == [
        ("key:bureau", "data_sharing", "GET", "/api/projects/P1/workers", "workers", 1),
        ("key:bureau", "data_sharing", "GET", "/api/projects/P1/attendance", "attendance", 3),
        ("key:bureau", "data_sharing", "GET", "/api/projects/P1/devices", "devices", 1),
        ("key:bureau", "data_sharing", "GET", "/api/projects/P2/workers", "workers", 0),
    ]
    # An officer's reads are not data sharing: not audited.
    client.get("/api/projects/P1/workers", headers=login(client, "officer1"))
    assert count(db, "SELECT count(*) FROM access_audit") == 4
    # The admin sees the audit, filtered by principal.
    admin = login(client, "admin1")
    audit = client.get("/api/audit?principal=key:bureau", headers=admin).json()
    assert audit["total"] == 4
    assert {a["resource"] for a in audit["items"]} == {"workers", "attendance", "devices"}
    assert client.get("/api/audit?principal=key:other", headers=admin).json()["total"] == 0


def test_enterprise_list_and_detail_follow_scope(client: TestClient, world: dict[str, Any]) -> None:
    def usccs(name: str) -> set[str]:
        r = client.get("/api/enterprises", headers=login(client, name))
        assert r.status_code == 200
        return {e["uscc"] for e in r.json()["items"]}

    assert usccs("officer1") == {GC, SUB}
    assert usccs("officer2") == {OTHER}
    assert usccs("admin1") == {GC, SUB, OTHER}
    assert usccs("gc-user") == {GC}
    officer = login(client, "officer1")
    detail = client.get(f"/api/enterprises/{GC}", headers=officer).json()
    assert detail["name"] == "Great Build Co"
    assert detail["projects"] == [
        {"project_id": "P1", "project_name": "Project P1", "role": "general_contractor"}
    ]
    assert client.get(f"/api/enterprises/{OTHER}", headers=officer).status_code == 404
    gc = login(client, "gc-user")
    assert client.get(f"/api/enterprises/{SUB}", headers=gc).status_code == 404
    assert client.get(f"/api/enterprises/{SUB}/credit", headers=gc).status_code == 404
    assert client.get(f"/api/enterprises/{GC}/credit", headers=gc).status_code == 200


def _record(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "uscc": GC,
        "kind": "violation",
        "category": "safety",
        "severity": "alarm",
        "points": 12,
        "reason": "no guard rail at the pit edge",
        "source": "inspection:2026-001",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    return {**base, **kw}


def test_credit_records_are_explained_and_only_writers_may_add_them(
    client: TestClient, world: dict[str, Any]
) -> None:
    reg = login(client, "reg-city")
    r = client.post("/api/credit/records", json=_record(), headers=reg)
    assert r.status_code == 201, r.text
    assert r.json()["score"]["score"] == 88.0
    assert r.json()["score"]["grade"] == "B"
    explained = client.get(f"/api/enterprises/{GC}/credit", headers=login(client, "officer1"))
    assert explained.status_code == 200
    body = explained.json()
    assert (body["score"], body["grade"], body["blacklisted"]) == (88.0, "B", False)
    assert "grade A >= 90" in body["rule"]
    (rec,) = body["records"]
    assert rec["reason"] == "no guard rail at the pit edge"
    assert rec["recorded_by"] == "reg-city"
    assert rec["weighted_points"] == -12.0
    listed = client.get(f"/api/enterprises/{GC}", headers=reg).json()
    assert (listed["credit_score"], listed["credit_grade"]) == (88.0, "B")
    # The same source again is a conflict, not a second deduction.
    again = client.post("/api/credit/records", json=_record(), headers=reg)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    # Officers, enterprises and data-sharing users may not write.
    for name in ("officer1", "gc-user"):
        r = client.post(
            "/api/credit/records", json=_record(source=None), headers=login(client, name)
        )
        assert r.status_code == 403
    # Invalid bodies: 422 in the one error shape.
    for bad in (_record(points=0), _record(occurred_at="2026-01-01T00:00:00"), _record(uscc="X")):
        r = client.post("/api/credit/records", json=bad, headers=reg)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid"
    # An unknown (well-formed) enterprise, and one outside a district regulator's scope.
    r = client.post("/api/credit/records", json=_record(uscc=uscc(99)), headers=reg)
    assert r.status_code == 422
    assert f"no enterprise {uscc(99)}" in r.json()["error"]["message"]
    far = login(client, "reg-far")
    r = client.post("/api/credit/records", json=_record(source="x:1"), headers=far)
    assert r.status_code == 422
    r = client.post("/api/credit/records", json=_record(uscc=OTHER, source="x:1"), headers=far)
    assert r.status_code == 201


def test_worker_credit_is_scoped_and_audited(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    reg = login(client, "reg-city")
    r = client.post(
        "/api/credit/records",
        json=_record(uscc=None, person_id="W1", kind="commendation", points=3, source=None),
        headers=reg,
    )
    assert r.status_code == 201, r.text
    officer = login(client, "officer1")
    w1 = client.get("/api/workers/W1/credit", headers=officer)
    assert w1.status_code == 200
    assert w1.json()["subject"] == "person"
    assert w1.json()["records"][0]["kind"] == "commendation"
    assert client.get("/api/workers/W2/credit", headers=officer).status_code == 404
    assert client.get("/api/workers/NOBODY/credit", headers=officer).status_code == 404
    full = create_api_key(db, world["key"], "bureau", KeyGrant(projects=["P1"]), by="test")
    assert client.get("/api/workers/W1/credit", headers={"X-API-Key": full}).status_code == 200
    assert count(db, "SELECT count(*) FROM access_audit WHERE resource = 'worker_credit'") == 1


def test_lifting_a_blacklist_entry_restores_the_grade(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    reg = login(client, "reg-city")
    start = datetime.now(UTC) - timedelta(days=3)
    r = client.post(
        "/api/credit/blacklist",
        json={"uscc": GC, "starts_at": start.isoformat(), "reason": "forged permit"},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    entry_id = r.json()["id"]
    assert (r.json()["score"]["grade"], r.json()["score"]["blacklisted"]) == ("D", True)
    officer = login(client, "officer1")
    assert client.get(f"/api/enterprises/{GC}", headers=officer).json()["credit_grade"] == "D"
    # A lift needs a note; an officer may not lift.
    r = client.patch(f"/api/credit/blacklist/{entry_id}", json={"lift": True}, headers=reg)
    assert r.status_code == 422
    r = client.patch(
        f"/api/credit/blacklist/{entry_id}", json={"lift": True, "note": "x"}, headers=officer
    )
    assert r.status_code == 403
    r = client.patch(
        f"/api/credit/blacklist/{entry_id}",
        json={"lift": True, "note": "permit found genuine on appeal"},
        headers=reg,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["entry"]["active"] is False and body["entry"]["ends_at"] is not None
    assert (body["score"]["grade"], body["score"]["blacklisted"]) == ("A", False)
    (change,) = body["changes"]
    assert change["action"] == "lift"
    assert change["note"] == "permit found genuine on appeal"
    assert change["changed_by"] == "reg-city"
    detail = client.get(f"/api/enterprises/{GC}", headers=officer).json()
    assert (detail["credit_grade"], detail["blacklisted"]) == ("A", False)
    # Lifting it again: it has ended.
    r = client.patch(
        f"/api/credit/blacklist/{entry_id}", json={"lift": True, "note": "again"}, headers=reg
    )
    assert r.status_code == 409
    # Editing: reopen it as open-ended with a corrected reason.
    r = client.patch(
        f"/api/credit/blacklist/{entry_id}",
        json={"ends_at": None, "reason": "forged permit (confirmed)", "note": "appeal overturned"},
        headers=reg,
    )
    assert r.status_code == 200, r.text
    assert r.json()["score"]["grade"] == "D"
    assert r.json()["entry"]["reason"] == "forged permit (confirmed)"
    assert [c["action"] for c in r.json()["changes"]] == ["lift", "edit"]
    # Unknown entry, and one outside a district regulator's scope: 404.
    assert (
        client.patch("/api/credit/blacklist/999999", json={"lift": True, "note": "x"}, headers=reg)
    ).status_code == 404
    far = login(client, "reg-far")
    r = client.patch(
        f"/api/credit/blacklist/{entry_id}", json={"lift": True, "note": "x"}, headers=far
    )
    assert r.status_code == 404


def test_scheduled_recompute_catches_records_added_behind_its_back(
    db: psycopg.Connection, pg_url: str, world: dict[str, Any], settings: Settings
) -> None:
    def score() -> float:
        row = db.execute(
            "SELECT credit_score::float8 FROM enterprises WHERE uscc = %s", (GC,)
        ).fetchone()
        assert row is not None
        return float(row[0])

    def add(points: int) -> None:
        db.execute(
            "INSERT INTO credit_records (uscc, kind, category, points, reason, occurred_at,"
            " recorded_by) VALUES (%s, 'violation', 'safety', %s, 'import', now(), 'test')",
            (GC, points),
        )

    add(5)
    assert score() == 100.0  # nothing recomputed it yet
    fast = settings.model_copy(update={"credit_recompute_hours": 0.5 / 3600})
    recomputer = CreditRecomputer(pg_url, fast).start()
    try:
        wait_until(lambda: score() == 95.0, timeout=20, what="first recompute")
        add(10)
        wait_until(lambda: score() == 85.0, timeout=20, what="a later recompute")
        assert recomputer.rounds >= 2
    finally:
        recomputer.stop()


def test_recompute_interval_is_a_setting() -> None:
    assert Settings().credit_recompute_hours == 24.0
    with pytest.raises(ValueError, match="credit_recompute_hours"):
        Settings(credit_recompute_hours=0)


def test_values_postgresql_refuses_are_422_not_500(
    client: TestClient, world: dict[str, Any]
) -> None:
    admin = login(client, "admin1")
    for path in (
        "/api/enterprises?q=a%00b",
        "/api/projects/P%001/workers",
        "/api/workers/W%001/credit",
        "/api/projects/P1/attendance?day=9999-12-31",
    ):
        r = client.get(path, headers=admin)
        assert r.status_code in (404, 422), (path, r.text)
        assert "error" in r.json()
    # 0.001 points pass the model but round to 0.00, which the table's CHECK refuses.
    r = client.post("/api/credit/records", json=_record(points=0.001), headers=admin)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid"
