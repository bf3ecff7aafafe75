"""Data sharing (issue 8): keys read only what their grant names (projects, datasets,
fields), ID numbers leave in clear only with the grant, every key request is audited with
its record count, CSV and Parquet exports round-trip and respect date range and scope, and
the data-quality report finds planted problems."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from api_helpers import id_number, login, project, uscc, user
from conftest import count
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from server.principal import KeyGrant
from server.users import create_api_key
from smartsite.db.registry import (
    EnterpriseIn,
    PermitIn,
    PersonIn,
    link_enterprise,
    upsert_enterprise,
    upsert_permit,
    upsert_person,
)
from smartsite.identifiers import mask_id_number
from smartsite.secrets import fernet, secret_key
from smartsite.settings import Settings

GC, SUB = uscc(1), uscc(2)
BAD_USCC = uscc(3)[:17] + ("0" if uscc(3)[17] != "0" else "1")  # wrong check character
ID1, ID2 = id_number(121), id_number(342)
BAD_ID = ID1[:17] + ("0" if ID1[17] != "0" else "1")  # wrong check digit
TODAY = datetime.now(UTC).date()


def _alert(db: psycopg.Connection, project_id: str, at: datetime) -> None:
    db.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity)"
        " VALUES (%s, %s, %s, %s, 'hub', 'helmet', 'warning')",
        (uuid.uuid4(), at, project_id, f"cam-{at:%m%d}"),
    )


@pytest.fixture
def world(db: psycopg.Connection, settings: Settings) -> dict[str, Any]:
    """P1 (district 110105): a valid permit, a BIM model, two enterprises, workers W1 (ID
    valid) and W3 (stored ID with a wrong check digit, predating validation), alerts in
    January and March. P2 (110105): expired permit. P3 (110108): no permit, W2."""
    key = secret_key(settings)
    project(db, "P1", "110105")
    project(db, "P2", "110105")
    project(db, "P3", "110108")
    for code, name in ((GC, "Great Build Co"), (SUB, "Small Sub Co")):
        upsert_enterprise(db, EnterpriseIn(uscc=code, name=name))
    db.execute("INSERT INTO enterprises (uscc, name) VALUES (%s, 'Old Record Co')", (BAD_USCC,))
    link_enterprise(db, "P1", GC, "general_contractor")
    link_enterprise(db, "P1", SUB, "subcontractor")
    db.execute(  # stored before the registry checked codes: no validation on this path
        "INSERT INTO project_enterprises VALUES ('P3', %s, 'general_contractor')", (BAD_USCC,)
    )
    upsert_permit(db, PermitIn(number="110105202601", project_id="P1", issued_on=date(2026, 1, 5)))
    upsert_permit(
        db,
        PermitIn(
            number="110105202402",
            project_id="P2",
            issued_on=date(2024, 3, 1),
            expires_on=date(2025, 3, 1),
        ),
    )
    upsert_person(
        db, PersonIn(id="W1", name="Zhang San", id_number=SecretStr(ID1), employer_uscc=GC), key
    )
    upsert_person(db, PersonIn(id="W2", name="Li Si", id_number=SecretStr(ID2)), key)
    db.execute("UPDATE persons SET employer_uscc = %s WHERE id = 'W2'", (BAD_USCC,))
    db.execute(
        "INSERT INTO persons (id, name, id_number_hash, id_number_masked, id_number_encrypted)"
        " VALUES ('W3', 'Wang Wu', %s, %s, %s)",
        (b"w3-hash", mask_id_number(BAD_ID), fernet(key, "id_number").encrypt(BAD_ID.encode())),
    )
    db.execute(
        "INSERT INTO project_workers (project_id, person_id) VALUES ('P1', 'W1'), ('P1', 'W3'),"
        " ('P3', 'W2')"
    )
    db.execute(
        "INSERT INTO bim_models (project_id, version, sha256, file_name, file_size, schema,"
        " length_unit_m, source) VALUES ('P1', 1, %s, 'p1.ifc', 3, 'IFC4', 1, 'ifc')",
        ("0" * 64,),
    )
    for at in (
        datetime(2026, 1, 10, 8, tzinfo=UTC),
        datetime(2026, 1, 20, 8, tzinfo=UTC),
        datetime(2026, 3, 5, 8, tzinfo=UTC),
    ):
        _alert(db, "P1", at)
    _alert(db, "P3", datetime(2026, 1, 15, 8, tzinfo=UTC))
    db.execute(
        "INSERT INTO credit_records (uscc, kind, category, points, reason, occurred_at,"
        " recorded_by) VALUES (%s, 'violation', 'safety', 5, 'no helmet', '2026-01-12', 't'),"
        " (%s, 'violation', 'safety', 3, 'fence', '2026-01-13', 't')",
        (GC, BAD_USCC),
    )
    user(db, "admin1", "admin")
    user(db, "reg-city", "regulator")
    return {"key": key}


def _key(db: psycopg.Connection, world: dict[str, Any], name: str, **grant: Any) -> dict[str, str]:
    full = create_api_key(db, world["key"], name, KeyGrant(**grant), by="test")
    return {"X-API-Key": full}


# --- grants -----------------------------------------------------------------------------------


def test_grant_validation_rejects_unknown_fields_and_fields_outside_resources() -> None:
    with pytest.raises(ValidationError):
        KeyGrant(resources=["projects"], fields={"projects": ["id", "face_embedding"]})
    with pytest.raises(ValidationError):
        KeyGrant(resources=["projects"], fields={"workers": ["name"]})
    with pytest.raises(ValidationError):
        KeyGrant(resources=["faces"])  # type: ignore[list-item]
    g = KeyGrant(resources=["projects"], fields={"projects": ["name", "id"]})
    assert g.fields_of("projects") == ("id", "name")
    assert KeyGrant().personal_data == "masked"


def test_key_cannot_read_outside_projects_resources_or_fields(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    key = _key(
        db,
        world,
        "bureau",
        projects=["P1"],
        resources=["projects", "alerts"],
        fields={"projects": ["id", "name"]},
    )
    r = client.get("/api/sharing/projects", headers=key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["id"] for i in body["items"]] == ["P1"]
    assert body["fields"] == ["id", "name"]
    assert all(set(i) == {"id", "name"} for i in body["items"])
    # Another project: not there, and not reachable by filter.
    assert client.get("/api/sharing/alerts?project=P3", headers=key).status_code == 404
    alerts = client.get("/api/sharing/alerts", headers=key).json()
    assert {a["project_id"] for a in alerts["items"]} == {"P1"}
    assert alerts["total"] == 3
    # Datasets outside the grant: 403, on the sharing route and the other routes alike.
    for path in (
        "/api/sharing/workers",
        "/api/sharing/permits",
        "/api/exports/credit",
        "/api/projects/P1/workers",
        "/api/projects/P1/permits",
        "/api/enterprises",
        "/api/data-quality",
    ):
        r = client.get(path, headers=key)
        assert r.status_code == 403, (path, r.text)
    # A field-restricted dataset is only readable where fields are filtered.
    assert client.get("/api/projects", headers=key).status_code == 403
    # Alerts are granted whole: the alert routes keep working, in scope.
    r = client.get("/api/alerts", headers=key)
    assert r.status_code == 200
    assert {a["project_id"] for a in r.json()["items"]} == {"P1"}
    # The key sees its grant.
    g = client.get("/api/sharing/grant", headers=key).json()
    assert g["projects"] == ["P1"]
    assert g["resources"] == {"projects": ["id", "name"], "alerts": list(g["resources"]["alerts"])}


def test_key_without_resources_keeps_its_old_reach(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    key = _key(db, world, "legacy", district="110105")
    assert client.get("/api/projects/P1/workers", headers=key).status_code == 200
    assert client.get("/api/projects/P3/workers", headers=key).status_code == 404
    r = client.get("/api/sharing/projects", headers=key)
    assert [i["id"] for i in r.json()["items"]] == ["P1", "P2"]
    # Writes stay refused: keys are read-only.
    r = client.post("/api/credit/records", json={}, headers=key)
    assert r.status_code in (403, 422)


def test_id_numbers_leave_in_clear_only_with_the_grant_and_faces_never(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    masked = _key(db, world, "masked", projects=["P1"], resources=["workers"])
    clear = _key(db, world, "clear", projects=["P1"], resources=["workers"], personal_data="clear")
    narrow = _key(
        db,
        world,
        "narrow",
        projects=["P1"],
        resources=["workers"],
        fields={"workers": ["person_id", "name"]},
        personal_data="clear",
    )
    m = {
        w["person_id"]: w
        for w in client.get("/api/sharing/workers", headers=masked).json()["items"]
    }
    assert m["W1"]["id_number"] == mask_id_number(ID1)
    assert ID1 not in client.get("/api/sharing/workers", headers=masked).text
    body = client.get("/api/sharing/workers", headers=clear).json()
    assert body["personal_data"] == "clear"
    c = {w["person_id"]: w for w in body["items"]}
    assert c["W1"]["id_number"] == ID1
    assert set(c) == {"W1", "W3"}  # W2 works on P3
    n = client.get("/api/sharing/workers", headers=narrow).json()
    assert all(set(w) == {"person_id", "name"} for w in n["items"])
    assert n["personal_data"] is None
    for body_text in (
        client.get("/api/sharing/workers", headers=clear).text,
        client.get("/api/sharing/attendance", headers=_key(db, world, "all")).text,
    ):
        assert "face" not in body_text and "embedding" not in body_text
    # Users get masked numbers, whatever their role.
    admin = login(client, "admin1")
    w = client.get("/api/sharing/workers", headers=admin).json()["items"]
    assert {x["id_number"] for x in w} >= {mask_id_number(ID1)}
    assert ID1 not in client.get("/api/sharing/workers", headers=admin).text
    # The audit says how the numbers left.
    rows = db.execute(
        "SELECT principal, personal_data FROM access_audit WHERE resource = 'workers' ORDER BY id"
    ).fetchall()
    assert ("key:masked", "masked") in rows and ("key:clear", "clear") in rows
    assert ("key:narrow", None) in rows


def test_every_key_request_is_audited_with_fields_and_records(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    key = _key(
        db,
        world,
        "bureau",
        projects=["P1"],
        resources=["projects", "alerts", "workers"],
        fields={"projects": ["id", "name"]},
    )
    key_id = key["X-API-Key"].split("_")[1]
    assert client.get("/api/sharing/projects", headers=key).status_code == 200
    assert client.get("/api/sharing/alerts?since=2026-01-15", headers=key).status_code == 200
    assert client.get("/api/alerts", headers=key).status_code == 200
    assert client.get("/api/projects/P1/workers", headers=key).status_code == 200
    assert client.get("/api/sharing/permits", headers=key).status_code == 403
    assert client.get("/api/exports/alerts?format=csv", headers=key).status_code == 200
    assert client.get("/api/projects", headers={"X-API-Key": "sk_nokey_x"}).status_code == 401
    rows = db.execute(
        "SELECT principal, role, key_id, method, path, query, resource, fields, records, status"
        " FROM access_audit ORDER BY id"
    ).fetchall()
    assert rows[0] == (
        "key:bureau", "data_sharing", key_id, "GET", "/api/sharing/projects", "", "projects",
        ["id", "name"], 1, 200,
    )  # fmt: skip
    assert rows[1][5:] == ("since=2026-01-15", "alerts", list(rows[1][7]), 2, 200)
    assert rows[2][4:] == ("/api/alerts", "", "alerts", None, 3, 200)
    assert rows[3][4:] == ("/api/projects/P1/workers", "", "workers", [], 2, 200)
    assert rows[4][6:] == ("permits", None, 0, 403)
    assert rows[5][4] == "/api/exports/alerts" and rows[5][8:] == (3, 200)
    assert rows[6][0] == "key:<invalid>" and rows[6][2] is None and rows[6][9] == 401
    assert len(rows) == 7
    # Users' requests are not key requests: not audited here.
    client.get("/api/sharing/projects", headers=login(client, "admin1"))
    assert count(db, "SELECT count(*) FROM access_audit") == 7


# --- exports ----------------------------------------------------------------------------------


def test_csv_and_parquet_exports_round_trip_in_range_and_scope(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    reg = login(client, "reg-city")
    params = {"since": "2026-01-01", "until": "2026-02-01"}
    r = client.get("/api/exports/alerts", params={**params, "format": "csv"}, headers=reg)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "alerts_2026-01-01_2026-02-01.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert sorted((x["project_id"], x["created_at"][:10]) for x in rows) == [
        ("P1", "2026-01-10"),
        ("P1", "2026-01-20"),
        ("P3", "2026-01-15"),
    ]
    r = client.get("/api/exports/alerts", params={**params, "format": "parquet"}, headers=reg)
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 3
    assert sorted(table.column("project_id").to_pylist()) == ["P1", "P1", "P3"]
    assert all(t.year == 2026 and t.month == 1 for t in table.column("created_at").to_pylist())
    # Credit records by occurrence; permits by issue date.
    r = client.get("/api/exports/credit?format=parquet", headers=reg)
    credit = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert sorted((c["uscc"], c["points"]) for c in credit) == [(GC, 5.0), (BAD_USCC, 3.0)]
    r = client.get("/api/exports/permits?format=csv&since=2026-01-01", headers=reg)
    permits = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [p["number"] for p in permits] == ["110105202601"]
    # A key: its projects only, its fields only, in both formats.
    key = _key(
        db,
        world,
        "bureau",
        district="110105",
        resources=["alerts", "credit"],
        fields={"alerts": ["id", "project_id", "created_at", "severity"]},
    )
    r = client.get("/api/exports/alerts?format=parquet", headers=key)
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == ["id", "created_at", "project_id", "severity"]
    assert set(table.column("project_id").to_pylist()) == {"P1"}
    assert table.num_rows == 3
    r = client.get("/api/exports/credit?format=csv", headers=key)
    assert [c["uscc"] for c in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))] == [GC]
    audit = db.execute(
        "SELECT resource, records, fields FROM access_audit WHERE path LIKE '/api/exports/%'"
        " ORDER BY id"
    ).fetchall()
    assert audit == [
        ("alerts", 3, ["id", "created_at", "project_id", "severity"]),
        ("credit", 1, list(audit[1][2])),
    ]
    # An empty range still yields a file with its header / schema.
    r = client.get(
        "/api/exports/projects?format=parquet&since=2000-01-01&until=2000-01-02", headers=reg
    )
    assert pq.read_table(io.BytesIO(r.content)).num_rows == 0
    bad = client.get("/api/exports/projects?since=2026-02-01&until=2026-01-01", headers=reg)
    assert bad.status_code == 422
    assert client.get("/api/exports/workers", headers=reg).status_code == 422


def test_export_cli_writes_the_file(
    db: psycopg.Connection, pg_url: str, world: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, settings: Settings,
) -> None:  # fmt: skip
    from smartsite.cli import app

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SMARTSITE_HOME", str(settings.home))
    out = tmp_path / "alerts.parquet"
    r = CliRunner().invoke(
        app,
        ["export", "alerts", "--format", "parquet", "--since", "2026-01-01", "--until",
         "2026-02-01", "--project", "P1", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "2 alerts record(s)" in r.output
    assert pq.read_table(out).num_rows == 2
    out = tmp_path / "projects.csv"
    r = CliRunner().invoke(app, ["export", "projects", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [x["id"] for x in rows] == ["P1", "P2", "P3"]


# --- data quality -----------------------------------------------------------------------------


def _plant_quality_problems(db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    db.execute(
        "INSERT INTO devices (id, project_id, kind, last_seen) VALUES"
        " ('P1-cam', 'P1', 'camera', %s), ('P1-crane', 'P1', 'tower_crane', %s),"
        " ('P1-dust', 'P1', 'dust', NULL), ('P3-noise', 'P3', 'noise', %s)",
        (now - timedelta(minutes=2), now - timedelta(minutes=20), now - timedelta(hours=2)),
    )
    upsert_permit(
        db,
        PermitIn(
            number="110108202603", project_id="P3", issued_on=date(2026, 1, 1), status="suspended"
        ),
    )
    db.execute(
        "INSERT INTO zone_certificate_requirements VALUES"
        " ('P1', 'crane', 'special_operations:tower_crane_driver')"
    )
    db.execute(
        "INSERT INTO certificates (person_id, type, number, expires_on) VALUES"
        " ('W3', 'special_operations:tower_crane_driver', 'T-9', %s)",
        (TODAY - timedelta(days=3),),
    )
    for worker in ("W1", "W3"):
        db.execute(
            "INSERT INTO events (time, project_id, device_id, camera, event_id, type, track_id,"
            " label, score, box, zones, attributes, message_id) VALUES (%s, 'P1', 'P1-cam',"
            " 'c1', gen_random_uuid(), 'new', 1, 'person', 0.9, '{0,0,1,1}', '{crane}', %s,"
            " gen_random_uuid())",
            (now - timedelta(hours=1), Jsonb({"face": {"worker_id": worker}})),
        )


def test_data_quality_report_finds_planted_problems(
    client: TestClient, db: psycopg.Connection, world: dict[str, Any]
) -> None:
    _plant_quality_problems(db)
    r = client.get("/api/data-quality", headers=login(client, "reg-city"))
    assert r.status_code == 200, r.text
    q = r.json()
    permits = {(x["project_id"], x["problem"]) for x in q["projects_without_valid_permit"]}
    assert permits == {("P2", "expired"), ("P3", "suspended")}
    assert [e["uscc"] for e in q["enterprises_with_invalid_codes"]] == [BAD_USCC]
    ids = q["persons_with_invalid_id_numbers"]
    assert [(x["person_id"], x["id_number_masked"]) for x in ids] == [
        ("W3", mask_id_number(BAD_ID))
    ]
    assert "check digit" in ids[0]["problem"]
    assert BAD_ID not in r.text and ID1 not in r.text
    silent = {(d["device_id"], d["threshold_minutes"]) for d in q["silent_devices"]}
    assert silent == {("P1-crane", 5), ("P1-dust", 15), ("P3-noise", 15)}
    assert {p["project_id"] for p in q["projects_without_bim"]} == {"P2", "P3"}
    certs = {(c["person_id"], c["zone"], c["problem"]) for c in q["workers_missing_certificates"]}
    assert certs == {("W1", "crane", "missing"), ("W3", "crane", "expired")}
    assert q["summary"]["silent_devices"] == 3
    # One silence limit for every kind.
    q = client.get("/api/data-quality?silent_minutes=60", headers=login(client, "reg-city")).json()
    assert {d["device_id"] for d in q["silent_devices"]} == {"P1-dust", "P3-noise"}
    # Scoped: a key of district 110105 with every dataset sees P1 and P2 only.
    key = _key(db, world, "bureau", district="110105")
    q = client.get("/api/data-quality", headers=key).json()
    assert {x["project_id"] for x in q["projects_without_valid_permit"]} == {"P2"}
    assert q["enterprises_with_invalid_codes"] == []
    assert {d["project_id"] for d in q["silent_devices"]} == {"P1"}
    assert count(db, "SELECT count(*) FROM access_audit WHERE resource = 'data-quality'") == 1


def test_data_quality_cli_prints_a_table(
    db: psycopg.Connection, pg_url: str, world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch, settings: Settings,
) -> None:  # fmt: skip
    from smartsite.cli import app

    _plant_quality_problems(db)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SMARTSITE_HOME", str(settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    r = CliRunner().invoke(app, ["data-quality"])
    assert r.exit_code == 0, r.output
    assert "projects without valid permit" in r.output
    assert BAD_USCC in r.output
    assert mask_id_number(BAD_ID) in r.output and BAD_ID not in r.output
    assert "P1-crane" in r.output
