"""Logging in, tokens, rate limiting, API keys and the scope of the project list."""

from __future__ import annotations

import psycopg
from api_helpers import login, project, user
from fastapi.testclient import TestClient

from server.principal import KeyGrant
from server.users import create_api_key
from smartsite.secrets import secret_key
from smartsite.settings import Settings


def test_login_gives_a_token_that_names_the_user_and_scope(
    client: TestClient, db: psycopg.Connection
) -> None:
    project(db, "P1")
    project(db, "P2")
    user(db, "officer1", "officer", projects=["P1"])
    headers = login(client, "officer1")
    me = client.get("/api/auth/me", headers=headers).json()
    assert me["name"] == "officer1"
    assert me["role"] == "officer"
    assert me["projects"] == ["P1"]


def test_wrong_password_and_missing_token_are_401_with_the_same_error_shape(
    client: TestClient, db: psycopg.Connection
) -> None:
    user(db, "admin1", "admin")
    r = client.post("/api/auth/login", json={"username": "admin1", "password": "nope"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    r = client.get("/api/projects")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/api/projects", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401


def test_repeated_failures_lock_the_user_name_out(
    client: TestClient, db: psycopg.Connection, settings: Settings
) -> None:
    user(db, "admin1", "admin")
    for _ in range(settings.login_max_failures):
        r = client.post("/api/auth/login", json={"username": "admin1", "password": "guess"})
        assert r.status_code == 401
    r = client.post(
        "/api/auth/login", json={"username": "admin1", "password": "correct horse battery"}
    )
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0


def test_a_deactivated_user_s_token_stops_working(
    client: TestClient, db: psycopg.Connection
) -> None:
    uid = user(db, "admin1", "admin")
    headers = login(client, "admin1")
    assert client.get("/api/projects", headers=headers).status_code == 200
    db.execute("UPDATE users SET active = false WHERE id = %s", (uid,))
    assert client.get("/api/projects", headers=headers).status_code == 401


def test_project_list_is_the_callers_scope(client: TestClient, db: psycopg.Connection) -> None:
    project(db, "P1", "110105")
    project(db, "P2", "110105")
    project(db, "P3", "110108")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "reg-chaoyang", "regulator", district_code="110105")
    user(db, "reg-city", "regulator")

    def ids(name: str) -> list[str]:
        r = client.get("/api/projects", headers=login(client, name))
        assert r.status_code == 200
        return [p["id"] for p in r.json()["items"]]

    assert ids("officer1") == ["P1"]
    assert ids("reg-chaoyang") == ["P1", "P2"]
    assert ids("reg-city") == ["P1", "P2", "P3"]
    officer = login(client, "officer1")
    assert client.get("/api/projects/P1", headers=officer).status_code == 200
    other = client.get("/api/projects/P2", headers=officer)
    assert other.status_code == 404
    assert client.get("/api/projects/NOPE", headers=officer).json() == other.json()


def test_api_key_reads_only_its_grant_and_stops_when_revoked(
    client: TestClient, db: psycopg.Connection, settings: Settings
) -> None:
    project(db, "P1", "110105")
    project(db, "P2", "110108")
    full = create_api_key(
        db, secret_key(settings), "bureau of water", KeyGrant(district="110108"), by="test"
    )
    headers = {"X-API-Key": full}
    r = client.get("/api/projects", headers=headers)
    assert [p["id"] for p in r.json()["items"]] == ["P2"]
    assert client.get("/api/projects/P1", headers=headers).status_code == 404
    wrong = {"X-API-Key": full[:-2] + "xx"}
    assert client.get("/api/projects", headers=wrong).status_code == 401
    db.execute("UPDATE api_keys SET revoked_at = now()")
    assert client.get("/api/projects", headers=headers).status_code == 401


def test_live_stream_pushes_alerts_in_scope_only(
    client: TestClient, db: psycopg.Connection
) -> None:
    project(db, "P1")
    project(db, "P2")
    user(db, "officer1", "officer", projects=["P1"])
    token = login(client, "officer1")["Authorization"].split()[1]
    with client.websocket_connect(f"/api/alerts/live?token={token}") as ws:
        assert ws.receive_json()["type"] == "hello"
        for pid in ("P2", "P1"):
            db.execute(
                "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity)"
                " VALUES (gen_random_uuid(), now(), %s, %s, 'hub', 'noise_day', 'warning')",
                (pid, f"noise-{pid}"),
            )
            db.execute(
                "INSERT INTO alert_outbox (alert_id, action, audience, project_id, payload)"
                " SELECT id, 'open', 'officer', project_id, '{}' FROM alerts"
                " WHERE project_id = %s",
                (pid,),
            )
        event = ws.receive_json()
        assert event["project_id"] == "P1"  # P2's came first and was not sent
        assert event["action"] == "open"


def test_live_stream_refuses_a_bad_token(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    try:
        with client.websocket_connect("/api/alerts/live?token=bad") as ws:
            ws.receive_json()
    except WebSocketDisconnect as exc:
        assert exc.code == 4401
    else:
        raise AssertionError("the stream accepted a bad token")
