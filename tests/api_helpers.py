"""Building a small world of districts, projects and users for API tests, and logging in."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from server.users import UserIn, create_user
from smartsite.identifiers import id_check_digit, uscc_check_char

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


def uscc(n: int, region: str = "110105") -> str:
    """A valid unified social credit code (check character included), distinct per ``n``."""
    first17 = f"91{region}{n:09d}"
    return first17 + uscc_check_char(first17)


def id_number(serial: int, born: str = "19850315") -> str:
    """A valid resident ID number (ISO 7064 check digit), distinct per ``serial``."""
    first17 = f"110105{born}{serial:03d}"
    return first17 + id_check_digit(first17)
