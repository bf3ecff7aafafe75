"""schemathesis against the server's own OpenAPI document: generated requests, as an admin
(who may reach every operation), never get a 5xx."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import schemathesis
import uvicorn
from api_helpers import PASSWORD, project, user
from hypothesis import HealthCheck, settings

from server.app import create_app
from smartsite.embedded import free_port, wait_for_port
from smartsite.settings import Settings


@dataclass
class Live:
    base_url: str
    headers: dict[str, str]


@pytest.fixture
def live(pg_url: str, db: psycopg.Connection, settings: Settings) -> Iterator[Live]:
    """The real server on a free port, and an admin's token (admins may call everything)."""
    project(db, "P1")
    user(db, "admin1", "admin")
    port = free_port()
    app = create_app(settings, pg_url)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port, timeout=30)
    base = f"http://127.0.0.1:{port}"
    r = httpx.post(f"{base}/api/auth/login", json={"username": "admin1", "password": PASSWORD})
    yield Live(base, {"Authorization": f"Bearer {r.json()['access_token']}"})
    server.should_exit = True
    thread.join(timeout=10)


# The document does not need a database: build it from an app that is never started.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(secret_key="x" * 32), "postgresql://unused").openapi()
)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case: schemathesis.Case, live: Live) -> None:
    response = case.call(base_url=live.base_url, headers=live.headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
