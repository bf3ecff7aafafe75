"""Alerts in the caller's scope: list, detail, the lifecycle (推送 → 整改 → 复核销号) with photo
evidence, overdue rectifications, and the statistics regulators rank projects by.

Reads are scoped like every other read (an alert of another scope is 404, as if absent). The
site side (officer, admin) acknowledges, assigns and resolves; the regulator (and admin)
closes and reopens; data-sharing and enterprise principals only read. The lifecycle itself is
``alerts.lifecycle``; its errors map onto the API's error shape here.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from alerts import lifecycle as lc
from alerts.correlate import refresh
from alerts.risk import ProjectRisk, project_risks
from server.deps import Conn, Current, SettingsDep, require
from server.errors import ApiError, not_found
from server.pagination import Page, Paging
from server.principal import Principal, in_scope
from server.uploads import read_photo, refuse_keys_photos

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
stats_router = APIRouter(prefix="/api/stats", tags=["stats"])

Severity = Literal["warning", "alarm"]
Source = Literal["edge", "hub"]
SITE_ROLES = ("officer", "admin")
VERIFY_ROLES = ("regulator", "admin")

# --- models ----------------------------------------------------------------------------------


class AlertItem(BaseModel):
    """An alert as lists show it."""

    id: uuid.UUID
    project_id: str
    device_id: str
    source: str
    rule: str
    target: str
    title: str
    level: Severity = Field(description="预警 warning or 报警 alarm.")
    status: lc.Status
    priority: int
    value: float | None = Field(description="The last reading judged.")
    worst_value: float | None
    threshold: float | None = Field(description="The level the value crossed.")
    unit: str
    created_at: datetime = Field(description="When it opened.")
    cleared_at: datetime | None = Field(description="When the condition ended; None: active.")
    deadline: datetime | None = Field(description="Rectification deadline, once assigned.")
    responsible: str | None
    evidence_id: str | None = Field(description="Edge evidence photo, if any.")
    unpermitted_work: bool


class AlertDetail(AlertItem):
    """Everything about one alert, with its correlation, factors and transitions."""

    camera: str | None
    zone: str | None
    event_id: uuid.UUID | None
    detail: str
    rule_id: int | None
    rule_revision: int | None
    last_seen_at: datetime | None
    clear_reason: str | None
    escalated_at: datetime | None
    occurrences: int
    factors: list[dict[str, Any]] = Field(description="What set the level and priority.")
    correlation: dict[str, Any] | None = Field(description="Permit, BIM place, enterprises...")
    worker_id: str | None
    status_changed_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    resolution_note: str | None
    resolution_evidence_id: str | None
    closed_at: datetime | None
    updated_at: datetime
    transitions: list[lc.Transition]


_ITEM_COLUMNS = (
    "a.id, a.project_id, a.device_id, a.source, a.rule, a.target, a.title, "
    "a.severity AS level, a.status, a.priority, a.last_value AS value, a.worst_value, "
    "a.threshold, a.unit, a.created_at, a.cleared_at, a.deadline, a.responsible, a.evidence_id, "
    "a.unpermitted_work"
)
_DETAIL_COLUMNS = (
    _ITEM_COLUMNS + ", a.camera, a.zone, a.event_id, a.detail, a.rule_id, a.rule_revision, "
    "a.last_seen_at, a.clear_reason, a.escalated_at, a.occurrences, a.factors, a.correlation, "
    "a.worker_id, a.status_changed_at, a.acknowledged_at, a.resolved_at, a.resolution_note, "
    "a.resolution_evidence_id, a.closed_at, a.updated_at"
)


class NoteIn(BaseModel):
    note: str = Field("", max_length=2000, description="Why; kept in the transitions.")


class AssignIn(BaseModel):
    responsible: str = Field(min_length=1, max_length=100, description="Who rectifies it.")
    deadline: datetime = Field(description="By when (with a time zone).")
    note: str = Field("", max_length=2000)


class EvidenceOut(BaseModel):
    id: str
    kind: Literal["edge", "resolution", "transition"] = Field(
        description="The edge photo of the alert, its current resolution photo, or a photo of "
        "an earlier transition (a resolution rejected by reopening)."
    )
    content_type: str
    size: int
    received_at: datetime
    url: str


class Overdue(lc.Overdue):
    pass


# --- helpers -----------------------------------------------------------------------------------


def _alert_id(alert_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(alert_id)
    except ValueError:
        raise not_found("alert") from None


def scoped_alert(conn: psycopg.Connection, p: Principal, alert_id: str) -> dict[str, Any]:
    """The alert row (detail columns) if it exists and is in scope; else 404."""
    aid = _alert_id(alert_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_DETAIL_COLUMNS} FROM alerts a WHERE a.id = %s", (aid,)
        ).fetchone()
    if row is None or not p.sees(row["project_id"]):
        raise not_found("alert")
    return row


@contextmanager
def _lifecycle_errors() -> Iterator[None]:
    try:
        yield
    except lc.AlertNotFoundError:
        raise not_found("alert") from None
    except lc.IllegalTransitionError as exc:
        raise ApiError(
            409,
            "illegal_transition",
            str(exc),
            {"status": exc.current.value, "allowed": [s.value for s in exc.allowed]},
        ) from None
    except lc.NotPermittedError as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except lc.MissingDetailError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


def alert_detail(conn: psycopg.Connection, p: Principal, alert_id: str) -> AlertDetail:
    row = scoped_alert(conn, p, alert_id)
    return AlertDetail(**row, transitions=lc.history(conn, row["id"]))


# --- list, overdue, detail ----------------------------------------------------------------------


@router.get("")
def list_alerts(
    p: Current,
    conn: Conn,
    page: Paging,
    project: Annotated[str | None, Query(max_length=64, description="Project id.")] = None,
    status: Annotated[list[lc.Status] | None, Query(description="Status (repeatable).")] = None,
    severity: Annotated[Severity | None, Query(description="Level.")] = None,
    rule: Annotated[str | None, Query(max_length=64, description="Rule key.")] = None,
    source: Annotated[Source | None, Query(description="Judged at the edge or the hub.")] = None,
    active_only: Annotated[bool, Query(description="Only alerts not cleared.")] = False,
    overdue_only: Annotated[bool, Query(description="Only rectifications past deadline.")] = False,
    since: Annotated[datetime | None, Query(description="Opened at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Opened before.")] = None,
) -> Page[AlertItem]:
    """Alerts in scope, highest priority first, then newest."""
    where = (
        f" WHERE {in_scope('a.project_id')}"
        " AND (%(project)s::text IS NULL OR a.project_id = %(project)s)"
        " AND (%(status)s::text[] IS NULL OR a.status = ANY(%(status)s::text[]))"
        " AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)"
        " AND (%(rule)s::text IS NULL OR a.rule = %(rule)s)"
        " AND (%(source)s::text IS NULL OR a.source = %(source)s)"
        " AND (NOT %(active)s OR a.cleared_at IS NULL)"
        " AND (NOT %(overdue)s OR (a.status = 'rectifying' AND a.deadline < now()))"
        " AND (%(since)s::timestamptz IS NULL OR a.created_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR a.created_at < %(until)s)"
    )
    args = {
        "pids": p.pids,
        "project": project,
        "status": [s.value for s in status] if status else None,
        "severity": severity,
        "rule": rule,
        "source": source,
        "active": active_only,
        "overdue": overdue_only,
        "since": since,
        "until": until,
    }
    total = conn.execute("SELECT count(*) FROM alerts a" + where, args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_ITEM_COLUMNS} FROM alerts a" + where + " ORDER BY a.priority DESC,"
            " a.created_at DESC, a.id LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
    items = [AlertItem(**r) for r in rows]
    return Page(items=items, total=total[0] if total else 0, **page.model_dump())


@router.get("/overdue")
def list_overdue(
    p: Current,
    conn: Conn,
    project: Annotated[str | None, Query(max_length=64, description="Project id.")] = None,
) -> list[Overdue]:
    """Rectifications past their deadline in scope, most overdue first."""
    if project is not None and not p.sees(project):
        return []
    return [
        Overdue(**o.model_dump())
        for o in lc.overdue(conn, project_id=project)
        if p.sees(o.project_id)
    ]


@router.get("/{alert_id}")
def get_alert(alert_id: str, p: Current, conn: Conn) -> AlertDetail:
    return alert_detail(conn, p, alert_id)


# --- lifecycle ----------------------------------------------------------------------------------

SiteSide = Annotated[Principal, Depends(require(*SITE_ROLES))]
Verifier = Annotated[Principal, Depends(require(*VERIFY_ROLES))]
Correlator = Annotated[Principal, Depends(require("admin", "regulator", "officer"))]


@router.post("/{alert_id}/acknowledge")
def acknowledge_alert(alert_id: str, body: NoteIn, p: SiteSide, conn: Conn) -> AlertDetail:
    row = scoped_alert(conn, p, alert_id)
    with _lifecycle_errors():
        lc.acknowledge(conn, row["id"], by=p.actor(), note=body.note)
    return alert_detail(conn, p, alert_id)


@router.post("/{alert_id}/assign")
def assign_alert(alert_id: str, body: AssignIn, p: SiteSide, conn: Conn) -> AlertDetail:
    """Put the alert into rectification: who does it, by when."""
    row = scoped_alert(conn, p, alert_id)
    with _lifecycle_errors():
        lc.assign_rectification(
            conn,
            row["id"],
            by=p.actor(),
            responsible=body.responsible,
            deadline=body.deadline,
            note=body.note,
        )
    return alert_detail(conn, p, alert_id)


@router.post("/{alert_id}/resolve")
def resolve_alert(
    alert_id: str,
    p: SiteSide,
    conn: Conn,
    settings: SettingsDep,
    note: Annotated[str, Form(max_length=2000, description="What was done.")],
    photo: Annotated[UploadFile, File(description="Photo of the rectification: JPEG/PNG/WebP.")],
) -> AlertDetail:
    """Report the rectification done, with a photo; a regulator then verifies (closes) it."""
    row = scoped_alert(conn, p, alert_id)
    data, ctype = read_photo(photo, settings.upload_max_bytes)
    evidence_id = f"upload-{uuid.uuid4().hex}"
    with _lifecycle_errors(), conn.transaction():
        # the photo and the transition that cites it commit together, or neither does
        conn.execute(
            "INSERT INTO evidence (id, device_id, project_id, content_type, sha256, data)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (
                evidence_id,
                row["device_id"],
                row["project_id"],
                ctype,
                hashlib.sha256(data).digest(),
                data,
            ),
        )
        lc.resolve(conn, row["id"], by=p.actor(), note=note, evidence_id=evidence_id)
    return alert_detail(conn, p, alert_id)


@router.post("/{alert_id}/close")
def close_alert(alert_id: str, body: NoteIn, p: Verifier, conn: Conn) -> AlertDetail:
    """Verify the rectification (复核销号); the violation goes into the credit record."""
    row = scoped_alert(conn, p, alert_id)
    with _lifecycle_errors():
        lc.close(conn, row["id"], by=p.actor(), note=body.note)
    return alert_detail(conn, p, alert_id)


@router.post("/{alert_id}/reopen")
def reopen_alert(alert_id: str, body: NoteIn, p: Verifier, conn: Conn) -> AlertDetail:
    """Reject the rectification: the alert goes back for another one."""
    row = scoped_alert(conn, p, alert_id)
    with _lifecycle_errors():
        lc.reopen(conn, row["id"], by=p.actor(), note=body.note)
    return alert_detail(conn, p, alert_id)


# --- evidence -----------------------------------------------------------------------------------


def _evidence_ids(conn: psycopg.Connection, row: dict[str, Any]) -> dict[str, str]:
    """The alert's own evidence: id → kind."""
    ids: dict[str, str] = {}
    for (eid,) in conn.execute(
        "SELECT evidence_id FROM alert_transitions WHERE alert_id = %s"
        " AND evidence_id IS NOT NULL ORDER BY id",
        (row["id"],),
    ):
        ids[eid] = "transition"
    if row["resolution_evidence_id"]:
        ids[row["resolution_evidence_id"]] = "resolution"
    if row["evidence_id"]:
        ids[row["evidence_id"]] = "edge"
    return ids


_EVIDENCE_ROW = (
    "SELECT DISTINCT ON (id) id, content_type, length(data), received_at{data} FROM evidence"
    " WHERE id = ANY(%(ids)s) AND project_id = %(project)s"
    " ORDER BY id, (device_id = %(device)s) DESC, received_at DESC"
)


@router.get("/{alert_id}/evidence")
def list_evidence(alert_id: str, p: Current, conn: Conn) -> list[EvidenceOut]:
    """The photos of the alert that the hub holds (edge evidence, rectification photos)."""
    row = scoped_alert(conn, p, alert_id)
    ids = _evidence_ids(conn, row)
    rows = conn.execute(
        _EVIDENCE_ROW.format(data=""),
        {"ids": list(ids), "project": row["project_id"], "device": row["device_id"]},
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    return [
        EvidenceOut(
            id=eid,
            kind=kind,  # type: ignore[arg-type]
            content_type=by_id[eid][1],
            size=by_id[eid][2],
            received_at=by_id[eid][3],
            url=f"/api/alerts/{row['id']}/evidence/{eid}",
        )
        for eid, kind in ids.items()
        if eid in by_id
    ]


@router.get(
    "/{alert_id}/evidence/{evidence_id}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def get_evidence(alert_id: str, evidence_id: str, p: Current, conn: Conn) -> Response:
    """The image bytes of one of the alert's photos (never to API keys)."""
    refuse_keys_photos(p)
    row = scoped_alert(conn, p, alert_id)
    if evidence_id not in _evidence_ids(conn, row):
        raise not_found("evidence")
    got = conn.execute(
        _EVIDENCE_ROW.format(data=", data"),
        {"ids": [evidence_id], "project": row["project_id"], "device": row["device_id"]},
    ).fetchone()
    if got is None:
        raise not_found("evidence")
    return Response(
        bytes(got[4]),
        media_type=got[1],
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# --- statistics ---------------------------------------------------------------------------------


class DayCount(BaseModel):
    day: date
    warning: int
    alarm: int


class AlertTrends(BaseModel):
    days: int
    district: str | None
    timezone: str
    series: list[DayCount]


@stats_router.get("/alert-trends")
def alert_trends(
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    days: Annotated[int, Query(ge=1, le=366, description="Days back, today included.")] = 30,
    district: Annotated[str | None, Query(max_length=12, description="District code.")] = None,
) -> AlertTrends:
    """Alerts opened per day and level in scope (days in the hub's time zone), oldest first."""
    tz = ZoneInfo(settings.alerts_timezone)
    today = datetime.now(tz).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tz)
    rows = conn.execute(
        "SELECT (a.created_at AT TIME ZONE %(tz)s)::date AS day, a.severity, count(*)"
        " FROM alerts a JOIN projects pr ON pr.id = a.project_id"
        f" WHERE {in_scope('a.project_id')} AND a.created_at >= %(start)s"
        " AND (%(district)s::text IS NULL OR pr.district_code = %(district)s)"
        " GROUP BY 1, 2",
        {"tz": settings.alerts_timezone, "start": start, "pids": p.pids, "district": district},
    ).fetchall()
    counts: dict[tuple[date, str], int] = {(d, s): int(n) for d, s, n in rows}
    series = [
        DayCount(
            day=d,
            warning=counts.get((d, "warning"), 0),
            alarm=counts.get((d, "alarm"), 0),
        )
        for d in (first + timedelta(days=i) for i in range(days))
    ]
    return AlertTrends(
        days=days, district=district, timezone=settings.alerts_timezone, series=series
    )


@stats_router.get("/risk-ranking")
def risk_ranking(
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    district: Annotated[str | None, Query(max_length=12, description="District code.")] = None,
) -> list[ProjectRisk]:
    """Projects in scope, riskiest first, each score explained by its factors."""
    today = datetime.now(ZoneInfo(settings.alerts_timezone)).date()
    return project_risks(conn, today, pids=p.pids, district=district)


@router.post("/{alert_id}/correlate")
def correlate_alert(alert_id: str, p: Correlator, conn: Conn, settings: SettingsDep) -> AlertDetail:
    """Correlate the alert again (permit, BIM place, enterprises, worker) and store it."""
    row = scoped_alert(conn, p, alert_id)
    if not refresh(conn, row["id"], settings.alerts_low_credit_score, settings.alerts_timezone):
        raise not_found("alert")
    return alert_detail(conn, p, alert_id)
