"""The project dashboard's data queries on a month of telemetry (issue 7 acceptance).

Loads 30 days x 50 devices x 2 metrics of readings every 20 s (12.96 million rows, server
side with generate_series), keeps them for the next run (``--reload`` loads again), then times
what the dashboard asks at load (the summary, the series catalog, a 24 h chart per series at
the auto bucket, 7 d and 30 d charts) through the same functions the endpoints call, next to
the same charts aggregated from the raw telemetry table at the same buckets.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from rich import box
from rich.console import Console
from rich.table import Table

from server import telemetry
from smartsite.db import connect, ensure_database
from smartsite.db.migrate import upgrade
from smartsite.settings import Settings

PROJECT = "BENCH-DASH"
DISTRICT = "110105"
DAYS = 30
INTERVAL_S = 20
# Two metrics per device kind, with the level around which readings wander and their swing.
KINDS: dict[str, tuple[tuple[str, str, float, float], ...]] = {
    "tower_crane": (("moment_pct", "%", 55.0, 30.0), ("wind_speed_ms", "m/s", 6.0, 5.0)),
    "dust": (("pm10", "ug/m3", 55.0, 30.0), ("pm25", "ug/m3", 35.0, 20.0)),
    "noise": (("noise_dba", "dB(A)", 58.0, 12.0), ("noise_peak_dba", "dB(A)", 70.0, 15.0)),
    "foundation_pit": (
        ("p1_displacement_mm", "mm", 10.0, 8.0),
        ("p2_displacement_mm", "mm", 12.0, 8.0),
    ),
    "hoist": (("load_kg", "kg", 900.0, 600.0), ("speed_ms", "m/s", 0.6, 0.5)),
}
DEVICES_PER_KIND = 10


def _device_ids() -> list[tuple[str, str]]:
    return [(f"bd-{kind}-{i:02d}", kind) for kind in KINDS for i in range(DEVICES_PER_KIND)]


def expected_rows() -> int:
    per_series = DAYS * 86400 // INTERVAL_S
    return per_series * sum(len(m) for m in KINDS.values()) * DEVICES_PER_KIND


def _loaded(conn: psycopg.Connection) -> tuple[int, datetime | None]:
    row = conn.execute(
        "SELECT count(*), max(time) FROM telemetry WHERE project_id = %s", (PROJECT,)
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def load(conn: psycopg.Connection, console: Console, *, reload: bool) -> tuple[int, datetime]:
    """The bench's month of telemetry: reused when it is all there, else (re)loaded."""
    rows, end = _loaded(conn)
    if rows == expected_rows() and end is not None and not reload:
        console.print(f"reusing {rows:,} readings already loaded (--reload to load again)")
        return rows, end
    console.print(f"loading {expected_rows():,} readings ({DAYS} d x {len(_device_ids())} devices)")
    conn.execute(
        "INSERT INTO districts (code, name) VALUES (%s, 'Bench district') ON CONFLICT DO NOTHING",
        (DISTRICT,),
    )
    conn.execute(
        "INSERT INTO projects (id, name, district_code) VALUES (%s, 'Dashboard bench', %s)"
        " ON CONFLICT (id) DO NOTHING",
        (PROJECT, DISTRICT),
    )
    conn.execute("DELETE FROM telemetry WHERE project_id = %s", (PROJECT,))
    conn.execute("DELETE FROM device_status WHERE project_id = %s", (PROJECT,))
    conn.execute("DELETE FROM alerts WHERE project_id = %s", (PROJECT,))
    conn.execute("DELETE FROM attendance WHERE project_id = %s", (PROJECT,))
    series = []
    for n, (device, kind) in enumerate(_device_ids()):
        conn.execute(
            "INSERT INTO devices (id, project_id, kind, name) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET project_id = EXCLUDED.project_id",
            (device, PROJECT, kind, device),
        )
        for metric, unit, level, swing in KINDS[kind]:
            series.append((device, metric, unit, level, swing, n))
    end = datetime.now().astimezone().replace(microsecond=0, second=0)
    start = end - timedelta(days=DAYS)
    conn.execute(
        "CREATE TEMP TABLE bench_series (device text, metric text, unit text,"
        " level float8, swing float8, phase int)"
    )
    with conn.cursor().copy("COPY bench_series FROM STDIN") as cp:
        for s in series:
            cp.write_row(s)
    t0 = time.perf_counter()
    for day in range(DAYS):
        t_from = start + timedelta(days=day)
        # time-major order, as ingest writes: every series' reading of one instant together
        conn.execute(
            "INSERT INTO telemetry (time, project_id, device_id, metric, value, unit, message_id)"
            " SELECT t, %(p)s, s.device, s.metric,"
            "  s.level + s.swing * (0.6 * sin(extract(epoch FROM t) / 3600.0 + s.phase)"
            "  + 0.4 * (random() - 0.5)), s.unit, gen_random_uuid()"
            " FROM generate_series(%(a)s::timestamptz,"
            "  %(a)s::timestamptz + interval '1 day' - %(step)s * interval '1 second',"
            "  %(step)s * interval '1 second') AS t"
            " CROSS JOIN LATERAL (SELECT * FROM bench_series ORDER BY device, metric) s"
            " ORDER BY t",
            {"p": PROJECT, "a": t_from, "step": INTERVAL_S},
        )
        console.print(f"  day {day + 1}/{DAYS} loaded ({time.perf_counter() - t0:.0f} s)")
    conn.execute("DROP TABLE bench_series")
    # The dashboard's other counts: device status, open alerts, attendance today.
    conn.execute(
        "UPDATE devices SET last_seen = %s - (random() * interval '30 minutes')"
        " WHERE project_id = %s",
        (end, PROJECT),
    )
    conn.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity,"
        " status, target)"
        " SELECT gen_random_uuid(), %(end)s - g * interval '1 hour', %(p)s, d.id, 'hub',"
        "  'bench', CASE WHEN g %% 3 = 0 THEN 'alarm' ELSE 'warning' END,"
        "  CASE WHEN g %% 4 = 0 THEN 'closed' ELSE 'open' END, 'm' || g"
        " FROM devices d, generate_series(1, 6) g WHERE d.project_id = %(p)s",
        {"end": end, "p": PROJECT},
    )
    conn.execute(
        "INSERT INTO attendance (time, project_id, device_id, worker_id, similarity, direction,"
        " message_id)"
        " SELECT %(end)s - g * interval '1 minute', %(p)s, 'bd-gate', 'w' || (g %% 300), 0.9,"
        "  'in', gen_random_uuid() FROM generate_series(1, 2000) g",
        {"end": end, "p": PROJECT},
    )
    console.print("analyze")
    conn.execute("VACUUM (ANALYZE) telemetry")
    rows, last = _loaded(conn)
    assert last is not None
    console.print(f"loaded {rows:,} readings in {time.perf_counter() - t0:.0f} s")
    return rows, last


@dataclass
class Timings:
    """Milliseconds per query kind."""

    ms: dict[str, list[float]]

    def add(self, name: str, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = call(*args, **kw)
        self.ms.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        return out


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, by linear interpolation."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


CHARTS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def measure(
    conn: psycopg.Connection, settings: Settings, end: datetime, *, rounds: int, views: int
) -> tuple[Timings, Timings, Timings]:
    """(the endpoints' queries, the same charts from raw rows, through the 0003 views)."""
    from zoneinfo import ZoneInfo

    from alerts.rule_store import seed_defaults

    seed_defaults(conn)
    tz = ZoneInfo(settings.alerts_timezone)
    until = end + timedelta(seconds=1)
    api, raw, via_views = Timings({}), Timings({}), Timings({})
    catalog = telemetry.series_catalog(conn, PROJECT)
    devices = {s.device_id: telemetry.device(conn, s.device_id) for s in catalog}
    for r in range(rounds):
        api.add("dashboard summary", telemetry.dashboard, conn, PROJECT, tz=tz, now=end)
        api.add("series catalog", telemetry.series_catalog, conn, PROJECT)
        for name, span in CHARTS.items():
            bucket = telemetry.auto_bucket(span)
            for i, s in enumerate(catalog):
                dev = devices[s.device_id]
                assert dev is not None
                args = (conn, s.device_id, s.metric, until - span, until, bucket)
                api.add(
                    f"chart {name} (auto)",
                    telemetry.chart,
                    conn,
                    dev,
                    s.metric,
                    until - span,
                    until,
                    "auto",
                    tz=tz,
                    now=end,
                )
                raw.add(
                    f"chart {name} ({bucket}) raw", telemetry.points, *args, tz=tz, path="postgres"
                )
                # the 0003 views group every reading of the series: a few samples say enough
                if views and (i + r) % max(1, len(catalog) // views) == 0:
                    via_views.add(
                        f"chart {name} ({bucket}) via views",
                        telemetry.points,
                        *args,
                        tz=tz,
                        path="timescale",
                    )
    return api, raw, via_views


def run_bench(
    settings: Settings, console: Console, *, rounds: int = 3, reload: bool = False, views: int = 2
) -> dict[str, Any]:
    from smartsite.embedded import services

    with services(settings, need_mqtt=False) as svc:
        if settings.database_url:
            ensure_database(svc.database_url)
        upgrade(svc.database_url, settings)
        with connect(svc.database_url, autocommit=True) as conn:
            path = telemetry.path_of(conn)
            rows, end = load(conn, console, reload=reload)
            console.print(f"storage path: {path}; measuring {rounds} round(s)")
            measure(conn, settings, end, rounds=1, views=0)  # warm the caches once
            api, raw, via_views = measure(conn, settings, end, rounds=rounds, views=views)
    table = Table(box=box.SIMPLE, title=f"dashboard queries on {rows:,} readings ({path})")
    for col in ("query", "n", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="left" if col == "query" else "right")
    for t in (api, raw, via_views):
        for name, ms in t.ms.items():
            table.add_row(
                name, str(len(ms)), f"{pct(ms, 0.5):.1f}", f"{pct(ms, 0.95):.1f}", f"{max(ms):.1f}"
            )
    all_api = [v for ms in api.ms.values() for v in ms]
    all_raw = [v for ms in raw.ms.values() for v in ms]
    all_views = [v for ms in via_views.ms.values() for v in ms]
    table.add_row(
        "all endpoint queries",
        str(len(all_api)),
        f"{pct(all_api, 0.5):.1f}",
        f"{pct(all_api, 0.95):.1f}",
        f"{max(all_api):.1f}",
    )
    console.print(table)
    result: dict[str, Any] = {
        "bench": "dashboard",
        "rows": rows,
        "p50_ms": round(pct(all_api, 0.5), 1),
        "p95_ms": round(pct(all_api, 0.95), 1),
        "raw_p95_ms": round(pct(all_raw, 0.95), 1),
        "storage": path,
    }
    if all_views:
        result["views_p95_ms"] = round(pct(all_views, 0.95), 1)
    return result
