"""Administration API on the real database: admins only; user accounts (create, duplicate,
deactivate, password, projects); API keys (secret shown once, listed without it, revoked);
the audit list."""

from __future__ import annotations

import psycopg
import pytest
from api_helpers import PASSWORD, login, project, user
from conftest import count
from fastapi.testclient import TestClient

from server.principal import KeyGrant
from server.users import create_api_key
from smartsite.secrets import secret_key
from smartsite.settings import Settings

ADMIN_ONLY = (
    ("GET", "/api/users", None),
    ("POST", "/api/users", {"username": "x1", "password": "long enough", "role": "admin"}),
    ("PATCH", "/api/users/1", {"active": False}),
    ("GET", "/api/keys", None),
    ("POST", "/api/keys", {"name": "k"}),
    ("DELETE", "/api/keys/abcdef123456", None),
    ("GET", "/api/audit", None),
)


@pytest.fixture
def people(db: psycopg.Connection) -> psycopg.Connection:
    project(db, "P1", "110105")
    project(db, "P2", "110108")
    user(db, "admin1", "admin")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "reg-city", "regulator")
    user(db, "sharer", "data_sharing", projects=["P1"])
    return db


def test_administration_is_for_admins_only(
    client: TestClient, people: psycopg.Connection, settings: Settings
) -> None:
    full = create_api_key(people, secret_key(settings), "bureau", KeyGrant(), by="test")
    callers = [login(client, n) for n in ("officer1", "reg-city", "sharer")]
    callers.append({"X-API-Key": full})
    for headers in callers:
        for method, path, body in ADMIN_ONLY:
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
    assert client.get("/api/users").status_code == 401
    admin = login(client, "admin1")
    for method, path in (("GET", "/api/users"), ("GET", "/api/keys"), ("GET", "/api/audit")):
        assert client.request(method, path, headers=admin).status_code == 200


def test_admin_creates_a_user_who_can_log_in_and_duplicates_conflict(
    client: TestClient, people: psycopg.Connection
) -> None:
    admin = login(client, "admin1")
    new = {
        "username": "officer2",
        "password": "a long password",
        "display_name": "Officer Two",
        "role": "officer",
        "projects": ["P2"],
    }
    r = client.post("/api/users", json=new, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["username"] == "officer2"
    assert created["projects"] == ["P2"]
    assert created["active"] is True
    assert "password" not in r.text and "password_hash" not in created
    me = client.get("/api/auth/me", headers=login(client, "officer2", "a long password"))
    assert me.json()["projects"] == ["P2"]
    again = client.post("/api/users", json=new, headers=admin)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    r = client.post(
        "/api/users", json={**new, "username": "o3", "projects": ["NOPE"]}, headers=admin
    )
    assert r.status_code == 422
    assert "NOPE" in r.json()["error"]["message"]
    assert count(people, "SELECT count(*) FROM users WHERE username = 'o3'") == 0
    # The role's rules: an enterprise user needs an enterprise.
    r = client.post(
        "/api/users", json={**new, "username": "e1", "role": "enterprise"}, headers=admin
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid"
    listed = client.get("/api/users?role=officer", headers=admin).json()
    assert [u["username"] for u in listed["items"]] == ["officer1", "officer2"]
    assert "password_hash" not in str(listed)


def test_admin_deactivates_resets_password_and_reassigns_projects(
    client: TestClient, people: psycopg.Connection
) -> None:
    admin = login(client, "admin1")
    officer_id = people.execute("SELECT id FROM users WHERE username = 'officer1'").fetchone()[0]  # type: ignore[index]
    officer = login(client, "officer1")
    r = client.patch(f"/api/users/{officer_id}", json={"projects": ["P1", "P2"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["projects"] == ["P1", "P2"]
    # A new token carries the new scope.
    ids = client.get("/api/projects", headers=login(client, "officer1")).json()["items"]
    assert [p["id"] for p in ids] == ["P1", "P2"]
    r = client.patch(f"/api/users/{officer_id}", json={"projects": ["NOPE"]}, headers=admin)
    assert r.status_code == 422
    r = client.patch(
        f"/api/users/{officer_id}", json={"password": "another long one"}, headers=admin
    )
    assert r.status_code == 200
    bad = client.post("/api/auth/login", json={"username": "officer1", "password": PASSWORD})
    assert bad.status_code == 401
    login(client, "officer1", "another long one")
    r = client.patch(f"/api/users/{officer_id}", json={"active": False}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.get("/api/projects", headers=officer).status_code == 401
    assert (
        client.patch("/api/users/999999", json={"active": True}, headers=admin).status_code == 404
    )
    assert client.patch(f"/api/users/{officer_id}", json={}, headers=admin).status_code == 422
    # An admin cannot lock themselves out.
    admin_id = people.execute("SELECT id FROM users WHERE username = 'admin1'").fetchone()[0]  # type: ignore[index]
    r = client.patch(f"/api/users/{admin_id}", json={"active": False}, headers=admin)
    assert r.status_code == 409


def test_api_key_is_shown_once_listed_without_secret_and_revocable(
    client: TestClient, people: psycopg.Connection
) -> None:
    admin = login(client, "admin1")
    r = client.post(
        "/api/keys", json={"name": "district bureau", "grant": {"projects": ["P1"]}}, headers=admin
    )
    assert r.status_code == 201, r.text
    created = r.json()
    full = created["key"]
    assert full.startswith(f"sk_{created['id']}_")
    secret = full.split("_", 2)[2]
    assert created["grant"]["projects"] == ["P1"]
    assert created["created_by"] == "user:admin1"
    key = {"X-API-Key": full}
    projects = client.get("/api/projects", headers=key).json()["items"]
    assert [p["id"] for p in projects] == ["P1"]
    listed = client.get("/api/keys", headers=admin)
    assert listed.status_code == 200
    assert secret not in listed.text and "secret" not in listed.text
    (row,) = listed.json()["items"]
    assert row["id"] == created["id"]
    assert row["last_used_at"] is not None and row["revoked_at"] is None
    r = client.delete(f"/api/keys/{created['id']}", headers=admin)
    assert r.status_code == 204
    assert client.get("/api/projects", headers=key).status_code == 401
    assert client.get("/api/keys", headers=admin).json()["items"][0]["revoked_at"] is not None
    assert client.delete(f"/api/keys/{created['id']}", headers=admin).status_code == 204
    assert client.delete("/api/keys/abcdef123456", headers=admin).status_code == 404
    r = client.post("/api/keys", json={"name": "k", "grant": {"projects": ["NOPE"]}}, headers=admin)
    assert r.status_code == 422
    r = client.post("/api/keys", json={"name": "k", "grant": {"everything": True}}, headers=admin)
    assert r.status_code == 422


def test_audit_lists_personal_data_reads_newest_first_filtered_by_principal(
    client: TestClient, people: psycopg.Connection
) -> None:
    for principal, resource in (
        ("key:a", "workers"),
        ("user:sharer", "attendance"),
        ("key:a", "attendance"),
    ):
        people.execute(
            "INSERT INTO access_audit (principal, role, method, path, resource, records)"
            " VALUES (%s, 'data_sharing', 'GET', '/x', %s, 4)",
            (principal, resource),
        )
    admin = login(client, "admin1")
    everything = client.get("/api/audit", headers=admin).json()
    assert everything["total"] == 3
    assert everything["items"][0]["resource"] == "attendance"
    assert everything["items"][0]["principal"] == "key:a"
    mine = client.get("/api/audit", params={"principal": "key:a"}, headers=admin).json()
    assert [i["resource"] for i in mine["items"]] == ["attendance", "workers"]
    only = client.get(
        "/api/audit", params={"principal": "key:a", "resource": "workers"}, headers=admin
    ).json()
    assert only["total"] == 1


def test_values_postgresql_refuses_are_422_not_500(
    client: TestClient, people: psycopg.Connection
) -> None:
    admin = login(client, "admin1")
    long_code = {
        "username": "e9",
        "password": "long enough",
        "role": "enterprise",
        "enterprise_uscc": "9" * 19,
    }
    for body in (
        long_code,
        {
            "username": "o9",
            "password": "long enough",
            "role": "officer",
            "display_name": "nul\u0000here",
        },
    ):
        r = client.post("/api/users", json=body, headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid"
    r = client.post("/api/keys", json={"name": "bad\u0000name"}, headers=admin)
    assert r.status_code == 422
