"""Charts, the series catalog and the project dashboard over the API, on the real database:
known readings give known buckets, the threshold lines are the rule in force (kind, project,
device override), and a device outside the caller's scope is 404 like an absent one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_helpers import login, project, user
from fastapi.testclient import TestClient

from alerts.rule_store import RuleChange, put_rule, seed_defaults
from alerts.rules import Levels, Limit, RuleKind, RuleSpec
from server import telemetry

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")


def device(db: psycopg.Connection, did: str, pid: str, kind: str = "dust", **kw: object) -> str:
    db.execute(
        "INSERT INTO devices (id, project_id, kind, last_seen) VALUES (%s, %s, %s, %s)",
        (did, pid, kind, kw.get("last_seen")),
    )
    return did


def readings(
    db: psycopg.Connection, did: str, metric: str, rows: list[tuple[datetime, float]], unit: str
) -> None:
    pid = db.execute("SELECT project_id FROM devices WHERE id = %s", (did,)).fetchone()
    assert pid is not None
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry (time, project_id, device_id, metric, value, unit, message_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(t, pid[0], did, metric, v, unit, uuid.uuid4()) for t, v in rows],
        )


KNOWN = [
    (T0 + timedelta(seconds=10), 1.0),
    (T0 + timedelta(seconds=40), 3.0),
    (T0 + timedelta(minutes=1, seconds=5), 10.0),
    (T0 + timedelta(hours=1, minutes=30), 5.0),
]


@pytest.fixture
def site(db: psycopg.Connection) -> psycopg.Connection:
    project(db, "P1")
    project(db, "P2")
    device(db, "dust-1", "P1")
    device(db, "dust-2", "P1")
    device(db, "dust-9", "P2")
    readings(db, "dust-1", "pm10", KNOWN, "ug/m3")
    readings(db, "dust-9", "pm10", KNOWN, "ug/m3")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "admin1", "admin")
    return db


def chart(client: TestClient, headers: dict[str, str], did: str, **params: str) -> dict:
    r = client.get(f"/api/devices/{did}/telemetry", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def pts(body: dict) -> list[tuple[datetime, float, float, float, int]]:
    return [
        (datetime.fromisoformat(p["t"]), round(p["avg"], 6), p["min"], p["max"], p["count"])
        for p in body["points"]
    ]


def test_buckets_aggregate_known_readings(client: TestClient, site: psycopg.Connection) -> None:
    h = login(client, "officer1")
    span = {
        "metric": "pm10",
        "since": T0.isoformat(),
        "until": (T0 + timedelta(hours=2)).isoformat(),
    }
    one_min = chart(client, h, "dust-1", bucket="1m", **span)
    assert one_min["bucket"] == "1m"
    assert one_min["unit"] == "ug/m3"
    assert pts(one_min) == [
        (T0, 2.0, 1.0, 3.0, 2),
        (T0 + timedelta(minutes=1), 10.0, 10.0, 10.0, 1),
        (T0 + timedelta(hours=1, minutes=30), 5.0, 5.0, 5.0, 1),
    ]
    one_hour = chart(client, h, "dust-1", bucket="1h", **span)
    assert pts(one_hour) == [
        (T0, round(14 / 3, 6), 1.0, 10.0, 3),
        (T0 + timedelta(hours=1), 5.0, 5.0, 5.0, 1),
    ]
    raw = chart(client, h, "dust-1", bucket="raw", **span)
    assert raw["bucket"] == "raw"
    assert [(p[0], p[1]) for p in pts(raw)] == [(t, v) for t, v in KNOWN]
    # a day is the local day of the alert time zone: Beijing midnight is 16:00 UTC
    day = chart(client, h, "dust-1", bucket="1d", **span)
    assert pts(day) == [(datetime(2026, 1, 4, 16, tzinfo=UTC), 4.75, 1.0, 10.0, 4)]
    assert datetime.fromisoformat(day["since"]) == datetime(2026, 1, 4, 16, tzinfo=UTC)


def test_auto_keeps_charts_small_and_shows_few_readings_raw(
    client: TestClient, site: psycopg.Connection
) -> None:
    h = login(client, "officer1")
    short = chart(
        client, h, "dust-1", metric="pm10", since=T0.isoformat(),
        until=(T0 + timedelta(hours=2)).isoformat(),
    )  # fmt: skip
    assert short["bucket"] == "raw" and len(short["points"]) == 4
    month = chart(
        client, h, "dust-1", metric="pm10", since=(T0 - timedelta(days=29)).isoformat(),
        until=(T0 + timedelta(days=1)).isoformat(),
    )  # fmt: skip
    assert month["bucket"] == "2h"
    assert sum(p["count"] for p in month["points"]) == 4
    for span, bucket in [(timedelta(hours=24), "5m"), (timedelta(days=7), "30m")]:
        assert telemetry.auto_bucket(span) == bucket
        assert span / telemetry.BUCKETS[bucket] <= telemetry.AUTO_POINTS


def test_rollup_queries_match_the_raw_aggregation(site: psycopg.Connection) -> None:
    # The TimescaleDB path's SQL (rollup columns, re-bucketed) runs here on the plain path's
    # views of the same columns: it must give the same points as the raw aggregation.
    until = T0 + timedelta(hours=3)
    for bucket in ("1m", "5m", "1h", "3h", "1d"):
        a = telemetry.points(site, "dust-1", "pm10", T0, until, bucket, tz=TZ, path="postgres")
        b = telemetry.points(site, "dust-1", "pm10", T0, until, bucket, tz=TZ, path="timescale")
        assert a[:3] == b[:3]
        assert [(p.t, p.count, p.min, p.max) for p in a[3]] == [
            (p.t, p.count, p.min, p.max) for p in b[3]
        ]
        assert [p.avg for p in a[3]] == pytest.approx([p.avg for p in b[3]])


def _pm10(alarm: float, warning: float | None = None) -> RuleSpec:
    levels = (
        Levels(alarm=Limit(value=alarm), warning=Limit(value=warning))
        if warning is not None
        else Levels(alarm=Limit(value=alarm), warning_fraction=0.5)
    )
    return RuleSpec(
        kind=RuleKind.THRESHOLD, title="pm10", metric="pm10", unit="ug/m3", levels=levels
    )


def test_threshold_lines_are_the_rule_in_force(
    client: TestClient, site: psycopg.Connection
) -> None:
    h = login(client, "officer1")
    q = {"metric": "pm10", "since": T0.isoformat(), "until": (T0 + timedelta(hours=2)).isoformat()}
    none = chart(client, h, "dust-1", **q)
    assert none["warning"] is None and none["alarm"] is None and none["rule"] is None

    seed_defaults(site)  # PM10: alarm 80, warning at 80 % of it
    body = chart(client, h, "dust-1", **q)
    assert (body["warning"], body["alarm"]) == (pytest.approx(64.0), 80.0)
    assert body["rule"]["key"] == "pm10" and body["rule"]["scope"] == "kind"

    put_rule(
        site, RuleChange(key="pm10", device_kind="dust", project_id="P1", spec=_pm10(100)), by="t"
    )
    put_rule(
        site,
        RuleChange(key="pm10", device_kind="dust", device_id="dust-1", spec=_pm10(60, 45)),
        by="t",
    )
    own = chart(client, h, "dust-1", **q)
    assert (own["warning"], own["alarm"], own["rule"]["scope"]) == (45.0, 60.0, "device")
    # the other device of the project has the project's rule, not dust-1's override
    readings(site, "dust-2", "pm10", KNOWN[:1], "ug/m3")
    other = chart(client, h, "dust-2", **q)
    assert (other["warning"], other["alarm"], other["rule"]["scope"]) == (50.0, 100.0, "project")
    # a metric no threshold rule watches has no lines
    readings(site, "dust-1", "pm25", KNOWN[:1], "ug/m3")
    assert chart(client, h, "dust-1", **{**q, "metric": "pm25"})["alarm"] is None


def test_a_device_out_of_scope_is_404_like_an_absent_one(
    client: TestClient, site: psycopg.Connection
) -> None:
    h = login(client, "officer1")
    outside = client.get("/api/devices/dust-9/telemetry", params={"metric": "pm10"}, headers=h)
    absent = client.get("/api/devices/nope/telemetry", params={"metric": "pm10"}, headers=h)
    assert outside.status_code == absent.status_code == 404
    assert outside.json() == absent.json()
    for path in ("/api/projects/P2/series-catalog", "/api/projects/P2/dashboard"):
        assert client.get(path, headers=h).status_code == 404
    # the administrator sees every project
    assert chart(client, login(client, "admin1"), "dust-9", metric="pm10")["device_id"] == "dust-9"


def test_bad_chart_requests_are_422_with_a_reason(
    client: TestClient, site: psycopg.Connection
) -> None:
    h = login(client, "officer1")
    base = {
        "metric": "pm10",
        "since": T0.isoformat(),
        "until": (T0 + timedelta(days=30)).isoformat(),
    }
    for params, words in [
        ({**base, "bucket": "7w"}, "unknown bucket"),
        ({**base, "bucket": "1m"}, "more than"),
        ({**base, "until": T0.isoformat()}, "before"),
        ({**base, "since": "0001-01-01T00:00:00"}, "between 1970 and 2200"),
    ]:
        r = client.get("/api/devices/dust-1/telemetry", params=params, headers=h)
        assert r.status_code == 422, r.text
        assert words in r.json()["error"]["message"]


def test_series_catalog_and_dashboard_counts(client: TestClient, site: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    site.execute("UPDATE devices SET last_seen = %s WHERE id = 'dust-1'", (now,))
    site.execute(
        "UPDATE devices SET last_seen = %s WHERE id = 'dust-2'", (now - timedelta(days=1),)
    )
    readings(site, "dust-1", "pm25", [(T0, 7.5)], "ug/m3")
    for i, (sev, status, deadline) in enumerate(
        [
            ("alarm", "open", None),
            ("warning", "acknowledged", None),
            ("warning", "rectifying", now - timedelta(hours=1)),
            ("alarm", "closed", None),
        ]
    ):
        site.execute(
            "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity,"
            " status, target, responsible, deadline) VALUES (%s, %s, 'P1', 'dust-1', 'hub',"
            " 'pm10', %s, %s, %s, %s, %s)",
            (uuid.uuid4(), now, sev, status, f"t{i}", "lead" if deadline else None, deadline),
        )
    for worker, t in [("w1", now), ("w1", now), ("w2", now), ("w3", now - timedelta(days=2))]:
        site.execute(
            "INSERT INTO attendance (time, project_id, device_id, worker_id, similarity, direction,"
            " message_id) VALUES (%s, 'P1', 'gate-1', %s, 0.9, 'in', %s)",
            (t, worker, uuid.uuid4()),
        )
    h = login(client, "officer1")
    cat = client.get("/api/projects/P1/series-catalog", headers=h).json()
    assert [(s["device_id"], s["metric"], s["unit"], s["last_value"]) for s in cat] == [
        ("dust-1", "pm10", "ug/m3", 5.0),
        ("dust-1", "pm25", "ug/m3", 7.5),
    ]
    dash = client.get("/api/projects/P1/dashboard", headers=h).json()
    assert dash["devices"] == {"total": 2, "online": 1, "offline": 1}
    alerts = dash["alerts"]
    assert (alerts["open"], alerts["warning"], alerts["alarm"], alerts["overdue"]) == (3, 2, 1, 1)
    assert alerts["by_status"] == {"open": 1, "acknowledged": 1, "rectifying": 1}
    # today's records only (a record from 2 days ago is not today in any time zone)
    assert dash["attendance"]["workers_today"] == 2
    assert dash["attendance"]["records_today"] == 3
