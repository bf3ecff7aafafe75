"""Building a small world of districts, projects and users for API tests, and logging in."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from server.users import UserIn, create_user

PASSWORD = "correct horse battery"


def project(db: psycopg.Connection, pid: str, district: str = "110105", **kw: object) -> str:
    db.execute(
        "INSERT INTO districts (code, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (district, f"District {district}"),
    )
    db.execute(
        "INSERT INTO projects (id, name, district_code, latitude, longitude)"
        " VALUES (%s, %s, %s, %s, %s)",
        (pid, kw.get("name", f"Project {pid}"), district, 39.9, 116.4),
    )
    return pid


def user(db: psycopg.Connection, username: str, role: str, **kw: object) -> int:
    return create_user(
        db,
        UserIn(username=username, password=PASSWORD, role=role, **kw),  # type: ignore[arg-type]
    )


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
