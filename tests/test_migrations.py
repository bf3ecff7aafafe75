"""Migrations and storage on the real PostgreSQL server, each test on a database of its own."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import ADMIN_URL, count
from typer.testing import CliRunner

from smartsite.cli import app
from smartsite.db.migrate import UpgradeReport, load_migrations, storage_path, upgrade
from smartsite.db.policies import RAW_TABLES, prune
from smartsite.settings import Settings, get_settings

FIRST = ["0001_registries", "0002_timeseries", "0003_timeseries_storage"]
ALL = [f"{m.version}_{m.name}" for m in load_migrations()]


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """An empty database, dropped afterwards."""
    name = f"smartsite_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_migrations_are_numbered_and_start_with_the_foundation() -> None:
    assert ALL[:3] == FIRST
    assert [m.version for m in load_migrations()] == [f"{i:04d}" for i in range(1, len(ALL) + 1)]


def test_first_upgrade_applies_every_migration_on_the_plain_path(fresh_url: str) -> None:
    report = upgrade(fresh_url, Settings(), storage="postgres")
    assert report.path == "postgres"
    assert report.reason == "plain PostgreSQL requested"
    assert report.applied == ALL
    assert report.already == []
    assert report.policies == ["retention 365 d by the hub's prune job (plain PostgreSQL)"]
    with psycopg.connect(fresh_url) as conn:
        rows = conn.execute(
            "SELECT version || '_' || name, path FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert rows == [(label, "postgres") for label in ALL]
        assert storage_path(conn) == "postgres"
        for table in (*RAW_TABLES, "persons", "devices", "ingest_ledger", "dead_letters"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (table,)
        kinds = dict(
            conn.execute(
                "SELECT relname, relkind::text FROM pg_class "
                "WHERE relname IN ('telemetry_1m', 'telemetry_1h')"
            ).fetchall()
        )
        assert kinds == {"telemetry_1m": "v", "telemetry_1h": "v"}


@pytest.mark.parametrize("storage", ["auto", "postgres", "timescale"])
def test_second_upgrade_applies_nothing_and_keeps_the_recorded_path(
    fresh_url: str, storage: str
) -> None:
    upgrade(fresh_url, Settings(), storage="postgres")
    again = upgrade(fresh_url, Settings(), storage=storage)
    assert again.path == "postgres"
    assert again.reason == "recorded at the first upgrade"
    assert again.applied == []
    assert again.already == ALL
    with psycopg.connect(fresh_url) as conn:
        assert count(conn, "SELECT count(*) FROM schema_migrations") == len(ALL)


def test_concurrent_upgrades_take_turns(fresh_url: str) -> None:
    """Several hub replicas starting at once: all succeed, each migration runs once."""
    n = 4
    start = threading.Barrier(n)
    reports: list[UpgradeReport] = []
    errors: list[BaseException] = []

    def one() -> None:
        start.wait()
        try:
            reports.append(upgrade(fresh_url, Settings(), storage="postgres"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(reports) == n
    assert sorted(len(r.applied) for r in reports) == [0] * (n - 1) + [len(ALL)]
    assert all(r.already == ALL for r in reports if not r.applied)
    with psycopg.connect(fresh_url) as conn:
        assert count(conn, "SELECT count(*) FROM schema_migrations") == len(ALL)


INSERT_TELEMETRY = (
    "INSERT INTO telemetry (time, project_id, device_id, metric, value, unit, message_id) "
)
T0 = datetime(2026, 3, 1, 9, 58, 10, tzinfo=UTC)
# (seconds after 09:58:10 UTC, value): across minute and hour boundaries
POINTS = [(0, 10.0), (30, 20.0), (55, 30.0), (60, -4.0), (109, 6.0), (110, 2.0), (3700, 1.5)]


def _bucket(seconds: int, width: timedelta) -> datetime:
    t = T0 + timedelta(seconds=seconds)
    return t - (t - datetime(2000, 1, 1, tzinfo=UTC)) % width


def _expected(width: timedelta) -> dict[datetime, tuple[float, float, float, float, int]]:
    groups: dict[datetime, list[float]] = {}
    for s, v in POINTS:
        groups.setdefault(_bucket(s, width), []).append(v)
    return {b: (sum(vs) / len(vs), min(vs), max(vs), sum(vs), len(vs)) for b, vs in groups.items()}


@pytest.mark.parametrize("timezone", ["UTC", "Asia/Shanghai", "Asia/Kolkata"])
@pytest.mark.parametrize(
    ("view", "width"),
    [("telemetry_1m", timedelta(minutes=1)), ("telemetry_1h", timedelta(hours=1))],
)
def test_rollup_views_aggregate_per_utc_bucket(
    fresh_url: str, timezone: str, view: str, width: timedelta
) -> None:
    """Buckets start on UTC minutes and hours whatever the session's time zone (as
    TimescaleDB's time_bucket), and carry avg/min/max/sum/n of the rows in them."""
    tz_url = psycopg.conninfo.make_conninfo(fresh_url, options=f"-c TimeZone={timezone}")
    upgrade(tz_url, Settings(), storage="postgres")
    with psycopg.connect(tz_url, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                INSERT_TELEMETRY + "VALUES (%s, 'P1', 'crane-1', 'moment_pct', %s, '%%', %s)",
                [(T0 + timedelta(seconds=s), v, uuid.uuid4()) for s, v in POINTS],
            )
            # another series in the same buckets must not mix in
            cur.execute(
                INSERT_TELEMETRY + "VALUES (%s, 'P1', 'crane-2', 'moment_pct', 99, '%%', %s)",
                (T0, uuid.uuid4()),
            )
        rows = conn.execute(
            f"SELECT bucket, avg, min, max, sum, n FROM {view} "
            "WHERE device_id = 'crane-1' AND metric = 'moment_pct' ORDER BY bucket"
        ).fetchall()
    got = {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}
    expected = _expected(width)
    assert list(got) == sorted(expected)
    for bucket, (avg, lo, hi, total, n) in expected.items():
        g = got[bucket]
        assert g[0] == pytest.approx(avg)
        assert g[1:] == (lo, hi, pytest.approx(total), n)


def test_db_upgrade_command_reports_the_storage_path(
    fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_url)
    monkeypatch.setenv("SMARTSITE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        first = runner.invoke(app, ["db", "upgrade", "--storage", "postgres"])
        second = runner.invoke(app, ["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert "storage path: postgres (plain PostgreSQL requested)" in first.output
    for label in ALL:
        assert f"applied {label}" in first.output
    assert "0 already applied" in first.output
    assert second.exit_code == 0, second.output
    assert "storage path: postgres (recorded at the first upgrade)" in second.output
    assert "applied 0001" not in second.output
    assert f"{len(ALL)} already applied" in second.output
    assert not (tmp_path / "home").exists(), "a configured database needs no embedded one"


NOW_MINUS = "now() - make_interval(days => %s)"


@pytest.mark.parametrize(
    ("retention_days", "dedupe_window_days", "kept_telemetry", "kept_ledger"),
    [
        (365, 30, [1, 10, 300], [1, 29]),
        (5, 30, [1], [1, 29]),
        (365, 2, [1, 10, 300], [1]),
        (1000, 100, [1, 10, 300, 400], [1, 29, 40]),
    ],
)
def test_prune_deletes_only_what_is_past_retention(
    fresh_url: str,
    retention_days: int,
    dedupe_window_days: int,
    kept_telemetry: list[int],
    kept_ledger: list[int],
) -> None:
    upgrade(fresh_url, Settings(), storage="postgres")
    settings = Settings(retention_days=retention_days, dedupe_window_days=dedupe_window_days)
    telemetry_ages, ledger_ages = [1, 10, 300, 400], [1, 29, 40]
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        for age in telemetry_ages:
            conn.execute(
                INSERT_TELEMETRY + f"VALUES ({NOW_MINUS}, 'P1', 'd1', 'pm10', %s, 'u', %s)",
                (age, age, uuid.uuid4()),
            )
            conn.execute(
                "INSERT INTO device_status (time, project_id, device_id, state, message_id) "
                f"VALUES ({NOW_MINUS}, 'P1', 'd1', 'online', %s)",
                (age, uuid.uuid4()),
            )
        for seq, age in enumerate(ledger_ages):
            conn.execute(
                "INSERT INTO ingest_ledger (message_id, device_id, seq, received_at) "
                f"VALUES (%s, 'd1', %s, {NOW_MINUS})",
                (uuid.uuid4(), seq, age),
            )
        deleted = prune(conn, storage_path(conn), settings)
        assert deleted["telemetry"] == len(telemetry_ages) - len(kept_telemetry)
        assert deleted["device_status"] == len(telemetry_ages) - len(kept_telemetry)
        assert deleted["ingest_ledger"] == len(ledger_ages) - len(kept_ledger)
        left = [r[0] for r in conn.execute("SELECT value::int FROM telemetry ORDER BY value")]
        assert left == kept_telemetry
        assert count(conn, "SELECT count(*) FROM device_status") == len(kept_telemetry)
        ledger_left = count(conn, "SELECT count(*) FROM ingest_ledger")
        assert ledger_left == len(kept_ledger)
