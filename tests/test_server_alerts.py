"""The alert API on the real database: list and detail in scope, the whole lifecycle with a
rectification photo uploaded and served back, illegal transitions, roles, bad uploads, the
overdue list and the statistics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from api_helpers import login, project, user
from fastapi.testclient import TestClient

from alerts import lifecycle as lc
from smartsite.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
UPLOAD_MAX = 2048


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"upload_max_bytes": UPLOAD_MAX})


def make_alert(
    db: psycopg.Connection,
    project_id: str,
    device: str = "dev-1",
    *,
    severity: str = "alarm",
    priority: int = 60,
    rule: str = "crane_moment",
    evidence: bytes | None = None,
    created_at: datetime | None = None,
) -> str:
    """An open alert as the engine writes it (row and its 'open' transition)."""
    aid = uuid.uuid4()
    at = created_at or datetime.now(UTC)
    evidence_id = f"ev-{aid.hex[:8]}" if evidence is not None else None
    db.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity,"
        " status, target, title, last_value, worst_value, threshold, unit, priority,"
        " evidence_id, last_seen_at)"
        " VALUES (%s, %s, %s, %s, 'hub', %s, %s, 'open', %s, %s, 105, 105, 100, '%%', %s, %s,"
        " %s)",
        (
            aid,
            at,
            project_id,
            device,
            rule,
            severity,
            f"m-{aid.hex[:6]}",
            "塔吊力矩 tower-crane load moment",
            priority,
            evidence_id,
            at,
        ),
    )
    if evidence is not None:
        db.execute(
            "INSERT INTO evidence (id, device_id, project_id, content_type, sha256, data)"
            " VALUES (%s, %s, %s, 'image/jpeg', '\\x00', %s)",
            (evidence_id, device, project_id, evidence),
        )
    lc.record(db, aid, project_id, None, lc.Status.OPEN, "alert-engine", "system", at)
    return str(aid)


@pytest.fixture
def world(db: psycopg.Connection) -> psycopg.Connection:
    project(db, "P1", "110105")
    project(db, "P2", "110108")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "officer2", "officer", projects=["P2"])
    user(db, "reg-chaoyang", "regulator", district_code="110105")
    user(db, "share", "data_sharing", projects=["P1"])
    user(db, "admin1", "admin")
    return db


def deadline(hours: float = 24) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def test_full_lifecycle_with_photo_through_the_api(
    client: TestClient, world: psycopg.Connection
) -> None:
    aid = make_alert(world, "P1", evidence=JPEG)
    officer, regulator = login(client, "officer1"), login(client, "reg-chaoyang")

    r = client.get("/api/alerts", headers=officer)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [a["id"] for a in items] == [aid]
    a = items[0]
    assert (a["level"], a["status"], a["value"], a["threshold"], a["unit"]) == (
        "alarm",
        "open",
        105,
        100,
        "%",
    )
    assert a["title"] and a["device_id"] == "dev-1" and a["evidence_id"]

    r = client.post(f"/api/alerts/{aid}/acknowledge", json={"note": "seen"}, headers=officer)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    r = client.post(
        f"/api/alerts/{aid}/assign",
        json={"responsible": "foreman Li", "deadline": deadline(), "note": "fix the limiter"},
        headers=officer,
    )
    assert r.status_code == 200, r.text
    assert r.json()["responsible"] == "foreman Li"
    r = client.post(
        f"/api/alerts/{aid}/resolve",
        data={"note": "limiter recalibrated"},
        files={"photo": ("after.png", PNG, "application/octet-stream")},
        headers=officer,
    )
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["status"] == "resolved"
    photo_id = detail["resolution_evidence_id"]
    assert photo_id and photo_id.startswith("upload-")

    r = client.get(f"/api/alerts/{aid}/evidence", headers=regulator)
    assert r.status_code == 200
    kinds = {e["id"]: (e["kind"], e["content_type"]) for e in r.json()}
    assert kinds[photo_id] == ("resolution", "image/png")
    assert kinds[detail["evidence_id"]] == ("edge", "image/jpeg")
    r = client.get(f"/api/alerts/{aid}/evidence/{photo_id}", headers=regulator)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content == PNG
    row = world.execute(
        "SELECT device_id, project_id FROM evidence WHERE id = %s", (photo_id,)
    ).fetchone()
    assert row == ("dev-1", "P1")

    # the regulator rejects it once, then verifies the second rectification
    r = client.post(f"/api/alerts/{aid}/reopen", json={"note": "still loose"}, headers=regulator)
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/alerts/{aid}/assign",
        json={"responsible": "foreman Li", "deadline": deadline()},
        headers=officer,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/alerts/{aid}/resolve",
        data={"note": "replaced"},
        files={"photo": ("again.jpg", JPEG, "image/jpeg")},
        headers=officer,
    )
    assert r.status_code == 200, r.text
    r = client.post(f"/api/alerts/{aid}/close", json={"note": "verified"}, headers=regulator)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["status"] == "closed"
    steps = [(t["to_status"], t["actor"]) for t in detail["transitions"]]
    assert steps == [
        ("open", "alert-engine"),
        ("acknowledged", "officer1"),
        ("rectifying", "officer1"),
        ("resolved", "officer1"),
        ("reopened", "reg-chaoyang"),
        ("rectifying", "officer1"),
        ("resolved", "officer1"),
        ("closed", "reg-chaoyang"),
    ]
    # the rejected photo is still the alert's evidence (of a transition), and still served
    r = client.get(f"/api/alerts/{aid}/evidence", headers=officer)
    assert len(r.json()) == 3
    assert client.get(f"/api/alerts/{aid}/evidence/{photo_id}", headers=officer).content == PNG


def test_illegal_transitions_are_409_and_roles_are_403(
    client: TestClient, world: psycopg.Connection
) -> None:
    aid = make_alert(world, "P1")
    officer = login(client, "officer1")
    r = client.post(
        f"/api/alerts/{aid}/resolve",
        data={"note": "done"},
        files={"photo": ("a.png", PNG, "image/png")},
        headers=officer,
    )
    assert r.status_code == 409
    body = r.json()["error"]
    assert body["code"] == "illegal_transition"
    assert body["detail"] == {"status": "open", "allowed": ["acknowledged"]}
    # nothing was stored for the refused resolution
    assert world.execute("SELECT count(*) FROM evidence").fetchone() == (0,)
    assert (
        client.post(f"/api/alerts/{aid}/acknowledge", json={}, headers=officer).status_code == 200
    )
    r = client.post(f"/api/alerts/{aid}/acknowledge", json={}, headers=officer)
    assert r.status_code == 409
    # the officer cannot verify, the data-sharing user cannot act at all
    r = client.post(f"/api/alerts/{aid}/close", json={}, headers=officer)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    share = login(client, "share")
    assert client.get(f"/api/alerts/{aid}", headers=share).status_code == 200
    r = client.post(
        f"/api/alerts/{aid}/assign",
        json={"responsible": "x", "deadline": deadline()},
        headers=share,
    )
    assert r.status_code == 403
    # a lifecycle detail missing is 422 in the same shape
    r = client.post(
        f"/api/alerts/{aid}/assign",
        json={"responsible": "x", "deadline": deadline(-1)},
        headers=officer,
    )
    assert r.status_code == 422
    assert "already passed" in r.json()["error"]["message"]


def test_another_projects_officer_gets_404_everywhere(
    client: TestClient, world: psycopg.Connection
) -> None:
    aid = make_alert(world, "P1", evidence=JPEG)
    evidence_id = world.execute("SELECT evidence_id FROM alerts").fetchone()[0]
    other = login(client, "officer2")
    r = client.get("/api/alerts", headers=other)
    assert r.json()["items"] == [] and r.json()["total"] == 0
    assert client.get("/api/alerts?project=P1", headers=other).json()["total"] == 0
    for path in (f"/api/alerts/{aid}", f"/api/alerts/{aid}/evidence"):
        r = client.get(path, headers=other)
        assert r.status_code == 404
        assert r.json()["error"] == {
            "code": "not_found",
            "message": "alert not found",
            "detail": None,
        }
    assert client.get(f"/api/alerts/{aid}/evidence/{evidence_id}", headers=other).status_code == 404
    absent = uuid.uuid4()
    assert (
        client.get(f"/api/alerts/{absent}", headers=other).json()
        == client.get(f"/api/alerts/{aid}", headers=other).json()
    )
    assert client.post(f"/api/alerts/{aid}/acknowledge", json={}, headers=other).status_code == 404
    r = client.post(
        f"/api/alerts/{aid}/resolve",
        data={"note": "x"},
        files={"photo": ("a.png", PNG, "image/png")},
        headers=other,
    )
    assert r.status_code == 404
    assert client.get("/api/alerts/not-a-uuid", headers=other).status_code == 404
    # evidence of another alert cannot be fetched through this one
    mine = make_alert(world, "P1", device="dev-2")
    officer = login(client, "officer1")
    r = client.get(f"/api/alerts/{mine}/evidence/{evidence_id}", headers=officer)
    assert r.status_code == 404


def test_bad_uploads_are_413_and_415(client: TestClient, world: psycopg.Connection) -> None:
    aid = make_alert(world, "P1")
    officer = login(client, "officer1")
    client.post(f"/api/alerts/{aid}/acknowledge", json={}, headers=officer)
    client.post(
        f"/api/alerts/{aid}/assign",
        json={"responsible": "x", "deadline": deadline()},
        headers=officer,
    )

    def resolve(data: bytes, name: str = "p.png") -> tuple[int, dict]:  # type: ignore[type-arg]
        r = client.post(
            f"/api/alerts/{aid}/resolve",
            data={"note": "done"},
            files={"photo": (name, data, "image/png")},
            headers=officer,
        )
        return r.status_code, r.json()

    status, body = resolve(PNG + b"\x00" * UPLOAD_MAX)
    assert status == 413
    assert body["error"]["code"] == "too_large" and str(UPLOAD_MAX) in body["error"]["message"]
    status, body = resolve(b"GIF89a" + b"\x00" * 32, "p.gif")
    assert status == 415
    assert body["error"]["code"] == "unsupported_media_type"
    assert "JPEG, PNG or WebP" in body["error"]["message"]
    status, _ = resolve(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "p.png")
    assert status == 415
    assert world.execute("SELECT count(*) FROM evidence").fetchone() == (0,)
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16
    status, body = resolve(webp, "p.webp")
    assert status == 200, body
    got = world.execute("SELECT content_type FROM evidence").fetchone()
    assert got == ("image/webp",)


def test_list_filters_order_and_overdue(client: TestClient, world: psycopg.Connection) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    low = make_alert(world, "P1", severity="warning", priority=30, created_at=old)
    high = make_alert(world, "P1", priority=70, created_at=old)
    newer = make_alert(world, "P1", priority=30, rule="dust_pm10")
    make_alert(world, "P2", priority=90)
    admin = login(client, "admin1")
    officer = login(client, "officer1")

    def ids(query: str, who: dict[str, str] = officer) -> list[str]:
        r = client.get(f"/api/alerts{query}", headers=who)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["items"]]

    assert ids("") == [high, newer, low]
    assert len(ids("", admin)) == 4
    assert ids("?severity=warning") == [low]
    assert ids("?rule=dust_pm10") == [newer]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert ids("?" + "since=" + since.replace("+", "%2B")) == [newer]
    assert ids("?limit=1&offset=1") == [newer]
    world.execute("UPDATE alerts SET cleared_at = now() WHERE id = %s", (low,))
    assert ids("?active_only=true") == [high, newer]

    client.post(f"/api/alerts/{high}/acknowledge", json={}, headers=officer)
    client.post(
        f"/api/alerts/{high}/assign",
        json={"responsible": "x", "deadline": deadline()},
        headers=officer,
    )
    assert ids("?status=open&status=acknowledged") == [newer, low]
    assert ids("?overdue_only=true") == []
    world.execute("UPDATE alerts SET deadline = now() - interval '2 hours' WHERE id = %s", (high,))
    assert ids("?overdue_only=true") == [high]
    r = client.get("/api/alerts/overdue", headers=officer)
    assert r.status_code == 200
    assert [(o["alert_id"], o["responsible"]) for o in r.json()] == [(high, "x")]
    assert r.json()[0]["overdue_s"] > 7000
    assert client.get("/api/alerts/overdue", headers=login(client, "officer2")).json() == []
    assert client.get("/api/alerts?status=bogus", headers=officer).status_code == 422


def test_stats_trends_and_risk_ranking(client: TestClient, world: psycopg.Connection) -> None:
    make_alert(world, "P1", severity="warning", created_at=datetime.now(UTC) - timedelta(days=2))
    make_alert(world, "P1")
    make_alert(world, "P1")
    make_alert(world, "P2", severity="warning")
    world.execute(
        "INSERT INTO permits (number, project_id, issued_on) VALUES ('PERMIT-P1', 'P1', %s)",
        (datetime.now(UTC).date() - timedelta(days=10),),
    )
    admin = login(client, "admin1")

    r = client.get("/api/stats/alert-trends?days=7", headers=admin)
    assert r.status_code == 200, r.text
    series = r.json()["series"]
    assert len(series) == 7
    assert sum(d["alarm"] for d in series) == 2 and sum(d["warning"] for d in series) == 2
    assert series[-1]["alarm"] == 2
    r = client.get("/api/stats/alert-trends?days=7&district=110108", headers=admin)
    assert sum(d["warning"] + d["alarm"] for d in r.json()["series"]) == 1
    officer2 = client.get("/api/stats/alert-trends?days=7", headers=login(client, "officer2"))
    assert sum(d["warning"] + d["alarm"] for d in officer2.json()["series"]) == 1

    r = client.get("/api/stats/risk-ranking", headers=admin)
    assert r.status_code == 200, r.text
    ranking = r.json()
    assert [p["project_id"] for p in ranking] == ["P2", "P1"]  # P2 has no permit
    p2, p1 = ranking
    assert p2["permit_state"] == "missing" and p1["permit_state"] == "valid"
    assert (p1["open_alarms"], p1["open_warnings"]) == (2, 1)
    assert p1["score"] == sum(f["points"] for f in p1["factors"]) == 2 * 10 + 3
    assert {f["factor"] for f in p2["factors"]} == {"open_warnings", "permit"}
    r = client.get("/api/stats/risk-ranking", headers=login(client, "officer1"))
    assert [p["project_id"] for p in r.json()] == ["P1"]
    r = client.get("/api/stats/risk-ranking?district=110108", headers=admin)
    assert [p["project_id"] for p in r.json()] == ["P2"]
