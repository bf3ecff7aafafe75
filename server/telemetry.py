"""What the dashboards read about devices: chartable series, charts at a bucket with the
threshold lines of the rule in force, and a project's summary counts. Plain functions on a
connection (the routes and ``smartsite bench dashboard`` call the same ones).

Charts: on TimescaleDB they read the continuous aggregates ``telemetry_1m`` (buckets under an
hour) and ``telemetry_1h``; on plain PostgreSQL, where those are views that group the whole
table before a time range can apply, they aggregate the raw rows of the range from the
covering index of migration 0011 (an index-only scan) with the views' ``date_bin`` origin,
so both paths give the same points. Buckets are whole: the range is widened to bucket edges.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel, Field

from alerts.defaults import SILENCE_AFTER_S
from alerts.evaluate import limits_for
from alerts.rule_store import load_rules
from alerts.rules import Device, RuleKind
from smartsite.db.migrate import StoragePath, storage_path

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Buckets a chart may use: auto picks among all; the API also takes any by name.
BUCKETS: dict[str, timedelta] = {
    "1m": MINUTE,
    "2m": 2 * MINUTE,
    "5m": 5 * MINUTE,
    "10m": 10 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "3h": 3 * HOUR,
    "6h": 6 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
}
AUTO_POINTS = 500  # auto keeps a chart at or under this many points
MAX_POINTS = 10_000  # an explicit bucket (or raw) giving more is refused
RAW_AUTO_SPAN = 6 * HOUR  # auto shows raw readings for spans up to this, when few enough
UTC_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # the rollups' origin (time_bucket's, for 1m/1h)
DEFAULT_SILENCE_S = 15 * 60.0  # online: heard within the kind's silence time (this if unlisted)


class TelemetryError(ValueError):
    """A chart request that cannot be answered as asked (the message says why)."""


class Point(BaseModel):
    t: datetime = Field(description="Bucket start (raw: the reading's time).")
    avg: float
    min: float
    max: float
    count: int = Field(description="Readings in the bucket.")


class RuleLine(BaseModel):
    id: int
    key: str
    revision: int
    scope: Literal["kind", "project", "device"]
    title: str
    direction: Literal["above", "below"]
    window: str | None = Field(description="Time-of-day window whose levels are shown, if any.")
    explain: str = Field(description="How the levels were arrived at.")


class Chart(BaseModel):
    device_id: str
    metric: str
    since: datetime = Field(description="Start of the first bucket.")
    until: datetime = Field(description="End of the last bucket.")
    bucket: str = Field(description="raw, or the bucket used (auto picks one).")
    unit: str | None
    points: list[Point]
    warning: float | None = Field(description="预警 line of the rule in force; null: none.")
    alarm: float | None = Field(description="报警 line of the rule in force; null: none.")
    rule: RuleLine | None = Field(description="The rule in force for this device and metric.")


class SeriesOut(BaseModel):
    device_id: str
    device_name: str
    kind: str
    metric: str
    unit: str
    last_value: float
    last_time: datetime


class DeviceCounts(BaseModel):
    total: int = Field(description="Active devices.")
    online: int = Field(description="Heard within their kind's silence time.")
    offline: int


class AlertCounts(BaseModel):
    open: int = Field(description="Alerts not closed.")
    warning: int = Field(description="Of those, at 预警 warning level.")
    alarm: int = Field(description="Of those, at 报警 alarm level.")
    by_status: dict[str, int]
    overdue: int = Field(description="Rectifications past their deadline.")


class AttendanceCounts(BaseModel):
    workers_today: int = Field(description="Distinct workers recognised since local midnight.")
    records_today: int


class DashboardOut(BaseModel):
    project_id: str
    at: datetime
    devices: DeviceCounts
    alerts: AlertCounts
    attendance: AttendanceCounts


# --- the device and its storage path ---------------------------------------------------------


@dataclass(frozen=True)
class DeviceRow:
    id: str
    project_id: str
    kind: str
    rated: dict[str, float]


def device(conn: psycopg.Connection, device_id: str) -> DeviceRow | None:
    row = conn.execute(
        "SELECT id, project_id, kind, rated FROM devices WHERE id = %s", (device_id,)
    ).fetchone()
    return None if row is None else DeviceRow(row[0], row[1], row[2], dict(row[3] or {}))


_PATHS: dict[tuple[str, str, str], StoragePath] = {}


def path_of(conn: psycopg.Connection) -> StoragePath:
    """The storage path of the connection's database (recorded once, so cached)."""
    info = conn.info
    key = (info.host, str(info.port), info.dbname)
    got = _PATHS.get(key)
    if got is None:
        got = _PATHS[key] = storage_path(conn)
    return got


# --- buckets ---------------------------------------------------------------------------------


def origin_for(width: timedelta, tz: ZoneInfo) -> datetime:
    """Buckets up to an hour align to UTC (as the rollups do); longer ones to local midnight
    (exact on TimescaleDB where the zone's offset is whole hours)."""
    # in UTC: arithmetic on a ZoneInfo datetime is wall-clock arithmetic, date_bin's is not
    return UTC_ORIGIN if width <= HOUR else datetime(2000, 1, 1, tzinfo=tz).astimezone(UTC)


def _floor(t: datetime, width: timedelta, origin: datetime) -> datetime:
    return origin + width * math.floor((t - origin) / width)


def _ceil(t: datetime, width: timedelta, origin: datetime) -> datetime:
    return origin + width * math.ceil((t - origin) / width)


def auto_bucket(span: timedelta) -> str:
    """The finest bucket keeping a span at or under AUTO_POINTS points (1d at most)."""
    for name, width in BUCKETS.items():
        if math.ceil(span / width) <= AUTO_POINTS:
            return name
    return "1d"


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def window(
    since: datetime | None, until: datetime | None, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """A chart's range: until defaults to now, since to 24 h before until; naive times are
    UTC; times outside 1970..2200 are refused (no reading can be there)."""
    for t in (since, until):
        if t is not None and not EARLIEST <= _aware(t) <= LATEST:
            raise TelemetryError("since and until must lie between 1970 and 2200")
    end = _aware(until) if until is not None else (now or datetime.now(UTC))
    start = _aware(since) if since is not None else end - DAY
    if start >= end:
        raise TelemetryError("since must be before until")
    return start, end


_RAW = (
    "SELECT time, value FROM telemetry WHERE device_id = %(d)s AND metric = %(m)s"
    " AND time >= %(since)s AND time < %(until)s ORDER BY time LIMIT %(limit)s"
)
_FROM_RAW = (
    "SELECT date_bin(%(w)s, time, %(o)s) AS t, avg(value), min(value), max(value), count(*)"
    " FROM telemetry WHERE device_id = %(d)s AND metric = %(m)s"
    " AND time >= %(since)s AND time < %(until)s GROUP BY 1 ORDER BY 1"
)
_FROM_ROLLUP = (
    "SELECT date_bin(%(w)s, bucket, %(o)s) AS t, sum(sum) / sum(n), min(min), max(max),"
    " sum(n)::bigint FROM {rollup} WHERE device_id = %(d)s AND metric = %(m)s"
    " AND bucket >= %(since)s AND bucket < %(until)s GROUP BY 1 ORDER BY 1"
)


def points(
    conn: psycopg.Connection,
    device_id: str,
    metric: str,
    since: datetime,
    until: datetime,
    bucket: str,
    *,
    tz: ZoneInfo,
    path: StoragePath | None = None,
) -> tuple[str, datetime, datetime, list[Point]]:
    """The chart's points: (bucket used, first bucket's start, last one's end, points).
    ``bucket``: auto, raw or a name in BUCKETS. ``path``: the storage path, "raw" to
    aggregate the raw rows whatever the path (the bench's comparison)."""
    since, until = window(since, until)
    args: dict[str, Any] = {"d": device_id, "m": metric, "since": since, "until": until}
    if bucket == "auto":
        bucket = auto_bucket(until - since)
        if until - since <= RAW_AUTO_SPAN:
            args["limit"] = AUTO_POINTS + 1
            rows = conn.execute(_RAW, args).fetchall()
            if len(rows) <= AUTO_POINTS:
                return (
                    "raw",
                    since,
                    until,
                    [Point(t=t, avg=v, min=v, max=v, count=1) for t, v in rows],
                )
    if bucket == "raw":
        args["limit"] = MAX_POINTS + 1
        rows = conn.execute(_RAW, args).fetchall()
        if len(rows) > MAX_POINTS:
            raise TelemetryError(
                f"more than {MAX_POINTS} readings in the range: pick a bucket or a shorter range"
            )
        return "raw", since, until, [Point(t=t, avg=v, min=v, max=v, count=1) for t, v in rows]
    width = BUCKETS.get(bucket)
    if width is None:
        raise TelemetryError(f"unknown bucket {bucket!r}: auto, raw or one of {', '.join(BUCKETS)}")
    origin = origin_for(width, tz)
    lo, hi = _floor(since, width, origin), _ceil(until, width, origin)
    if (hi - lo) / width > MAX_POINTS:
        raise TelemetryError(
            f"{bucket} buckets over this range give more than {MAX_POINTS} points: pick a "
            "larger bucket or a shorter range"
        )
    args.update(w=width, o=origin, since=lo, until=hi)
    path = path or path_of(conn)
    if path == "timescale":
        sql = _FROM_ROLLUP.format(rollup="telemetry_1m" if width < HOUR else "telemetry_1h")
    else:
        sql = _FROM_RAW
    rows = conn.execute(sql, args).fetchall()
    return bucket, lo, hi, [Point(t=t, avg=a, min=mn, max=mx, count=n) for t, a, mn, mx, n in rows]


def _unit(conn: psycopg.Connection, device_id: str, metric: str) -> str | None:
    row = conn.execute(
        "SELECT unit FROM telemetry WHERE device_id = %s AND metric = %s"
        " ORDER BY time DESC LIMIT 1",
        (device_id, metric),
    ).fetchone()
    return None if row is None else row[0]


def rule_line(
    conn: psycopg.Connection, dev: DeviceRow, metric: str, at: datetime, tz: ZoneInfo
) -> tuple[float | None, float | None, RuleLine | None, str]:
    """(warning, alarm, the rule, its unit) of the threshold rule in force for the device's
    metric at ``at``: the most specific row per key (a device override beats the project's,
    which beats the kind's); of several keys matching the metric, the first by key."""
    rules = load_rules(conn).for_device(
        Device(id=dev.id, project_id=dev.project_id, kind=dev.kind, rated=dev.rated)
    )
    for key in sorted(rules):
        row = rules[key]
        spec = row.spec
        if spec.kind is not RuleKind.THRESHOLD or not spec.matches(metric):
            continue
        lim = limits_for(spec, dev.rated, at, tz)
        line = RuleLine(
            id=row.id,
            key=row.key,
            revision=row.revision,
            scope=row.scope,  # type: ignore[arg-type]
            title=spec.title,
            direction=spec.direction.value,  # type: ignore[arg-type]
            window=lim.window,
            explain=lim.explain,
        )
        return lim.warning, lim.alarm, line, spec.unit
    return None, None, None, ""


def chart(
    conn: psycopg.Connection,
    dev: DeviceRow,
    metric: str,
    since: datetime,
    until: datetime,
    bucket: str,
    *,
    tz: ZoneInfo,
    now: datetime | None = None,
    path: StoragePath | None = None,
) -> Chart:
    """One chart: points at a bucket, the unit, and the lines of the rule in force (at the
    chart's end, or now when that is later: a window rule's night levels show at night)."""
    used, lo, hi, pts = points(conn, dev.id, metric, since, until, bucket, tz=tz, path=path)
    now = now or datetime.now(UTC)
    warning, alarm, line, rule_unit = rule_line(conn, dev, metric, min(_aware(until), now), tz)
    unit = _unit(conn, dev.id, metric) or rule_unit or None
    return Chart(
        device_id=dev.id,
        metric=metric,
        since=lo,
        until=hi,
        bucket=used,
        unit=unit,
        points=pts,
        warning=warning,
        alarm=alarm,
        rule=line,
    )


# --- what a project can chart ----------------------------------------------------------------

# Distinct metrics per device by a loose index scan (one probe per metric, not per reading),
# then each series' latest reading by one backward probe.
_CATALOG = """
WITH RECURSIVE dev AS (
    SELECT id, name, kind FROM devices WHERE project_id = %(p)s AND active
), m AS (
    SELECT d.id AS device_id,
           (SELECT t.metric FROM telemetry t WHERE t.device_id = d.id
            ORDER BY t.metric LIMIT 1) AS metric
    FROM dev d
    UNION ALL
    SELECT m.device_id,
           (SELECT t.metric FROM telemetry t WHERE t.device_id = m.device_id
            AND t.metric > m.metric ORDER BY t.metric LIMIT 1)
    FROM m WHERE m.metric IS NOT NULL
)
SELECT d.id, d.name, d.kind, m.metric, l.unit, l.value, l.time
FROM m JOIN dev d ON d.id = m.device_id
CROSS JOIN LATERAL (
    SELECT t.unit, t.value, t.time FROM telemetry t
    WHERE t.device_id = m.device_id AND t.metric = m.metric ORDER BY t.time DESC LIMIT 1
) l
WHERE m.metric IS NOT NULL
ORDER BY d.id, m.metric
"""


def series_catalog(conn: psycopg.Connection, project_id: str) -> list[SeriesOut]:
    """Every (device, metric) of the project's active devices with readings: what can be
    charted, with its unit and latest reading."""
    rows = conn.execute(_CATALOG, {"p": project_id}).fetchall()
    names = list(SeriesOut.model_fields)
    return [SeriesOut(**dict(zip(names, r, strict=True))) for r in rows]


# --- the dashboard's counts ------------------------------------------------------------------

_SUMMARY = """
SELECT
  (SELECT count(*) FROM devices WHERE project_id = %(p)s AND active),
  (SELECT count(*) FROM devices d WHERE d.project_id = %(p)s AND d.active
     AND d.last_seen >= %(now)s - make_interval(secs =>
         coalesce((%(silence)s::jsonb ->> d.kind)::float8, %(default_silence)s))),
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
     SELECT status, count(*) AS n FROM alerts WHERE project_id = %(p)s AND status <> 'closed'
     GROUP BY status) s),
  (SELECT count(*) FILTER (WHERE severity = 'warning') FROM alerts
     WHERE project_id = %(p)s AND status <> 'closed'),
  (SELECT count(*) FILTER (WHERE severity = 'alarm') FROM alerts
     WHERE project_id = %(p)s AND status <> 'closed'),
  (SELECT count(*) FROM alerts WHERE project_id = %(p)s AND status = 'rectifying'
     AND deadline < %(now)s),
  (SELECT count(DISTINCT worker_id) FROM attendance WHERE project_id = %(p)s
     AND time >= %(midnight)s AND time <= %(now)s),
  (SELECT count(*) FROM attendance WHERE project_id = %(p)s
     AND time >= %(midnight)s AND time <= %(now)s)
"""


def dashboard(
    conn: psycopg.Connection, project_id: str, *, tz: ZoneInfo, now: datetime | None = None
) -> DashboardOut:
    """What a project dashboard shows at load, in one round trip."""
    now = now or datetime.now(UTC)
    midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    row = conn.execute(
        _SUMMARY,
        {
            "p": project_id,
            "now": now,
            "silence": json.dumps(SILENCE_AFTER_S),
            "default_silence": DEFAULT_SILENCE_S,
            "midnight": midnight,
        },
    ).fetchone()
    assert row is not None
    total, online, by_status, warning, alarm, overdue, workers, records = row
    return DashboardOut(
        project_id=project_id,
        at=now,
        devices=DeviceCounts(total=total, online=online, offline=total - online),
        alerts=AlertCounts(
            open=sum(by_status.values()),
            warning=warning,
            alarm=alarm,
            by_status=by_status,
            overdue=overdue,
        ),
        attendance=AttendanceCounts(workers_today=workers, records_today=records),
    )
