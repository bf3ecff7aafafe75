"""Sensor charts and the project dashboard: what can be charted, a chart with the rule's
threshold lines, and the counts a dashboard shows at load."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query

from server import telemetry
from server.deps import Conn, Current, SettingsDep, scoped_project
from server.errors import ApiError, not_found
from server.telemetry import BUCKETS, Chart, DashboardOut, SeriesOut, TelemetryError
from smartsite.protocol.topics import SEGMENT_PATTERN

router = APIRouter(tags=["telemetry"])

ProjectId = Annotated[str, Path(pattern=SEGMENT_PATTERN, description="Project id.")]
DeviceId = Annotated[str, Path(pattern=SEGMENT_PATTERN, description="Device id.")]
BUCKET_HELP = f"auto (≤ {telemetry.AUTO_POINTS} points), raw, or one of {', '.join(BUCKETS)}."


@router.get("/api/projects/{project_id}/series-catalog")
def series_catalog(project_id: ProjectId, p: Current, conn: Conn) -> list[SeriesOut]:
    """Every device metric of the project with readings, its unit and latest reading."""
    scoped_project(conn, p, project_id)
    return telemetry.series_catalog(conn, project_id)


@router.get("/api/projects/{project_id}/dashboard")
def project_dashboard(
    project_id: ProjectId, p: Current, conn: Conn, settings: SettingsDep
) -> DashboardOut:
    """Devices online/offline, open alerts by level and status, overdue rectifications and
    today's attendance (local day of the alert time zone)."""
    scoped_project(conn, p, project_id)
    return telemetry.dashboard(conn, project_id, tz=ZoneInfo(settings.alerts_timezone))


@router.get("/api/devices/{device_id}/telemetry")
def device_telemetry(
    device_id: DeviceId,
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    metric: Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Metric name.")],
    since: Annotated[
        datetime | None, Query(description="Start (ISO 8601); default: 24 h before until.")
    ] = None,
    until: Annotated[datetime | None, Query(description="End (ISO 8601); default: now.")] = None,
    bucket: Annotated[str, Query(max_length=8, description=BUCKET_HELP)] = "auto",
) -> Chart:
    """A chart of one metric: avg/min/max/count per bucket, with the warning and alarm lines
    of the rule in force for this device (null when no threshold rule watches the metric)."""
    dev = telemetry.device(conn, device_id)
    if dev is None or not p.sees(dev.project_id):
        raise not_found("device")
    try:
        since, until = telemetry.window(since, until)
        return telemetry.chart(
            conn, dev, metric, since, until, bucket, tz=ZoneInfo(settings.alerts_timezone)
        )
    except TelemetryError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
