"""Registries in the caller's scope: a project's permits, enterprises, workers, devices and
attendance, and the enterprises of the projects in scope.

Workers and attendance are personal data: every read is audited for data-sharing principals
(``server.audit``), ID numbers only ever leave masked and face data never leaves at all.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Query, Request
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from server.audit import personal_read
from server.deps import Conn, Current, SettingsDep, scoped_project
from server.errors import ApiError, not_found
from server.pagination import Page, Paging
from server.principal import Principal, in_scope

router = APIRouter(tags=["registry"])


# --- scope helpers (also used by the credit routes) ---------------------------------------------


_ENTERPRISE_SCOPE = (
    "(%(pids)s::text[] IS NULL OR EXISTS (SELECT 1 FROM project_enterprises pe"
    f" WHERE pe.uscc = e.uscc AND {in_scope('pe.project_id')}))"
    " AND (%(own)s::text IS NULL OR e.uscc = %(own)s)"
)


def _own_enterprise(p: Principal) -> str | None:
    """An enterprise user's own credit code (they see only their enterprise); None: any."""
    if p.role != "enterprise":
        return None
    return p.enterprise_uscc or ""


def enterprise_visible(conn: psycopg.Connection, p: Principal, uscc: str) -> bool:
    """The enterprise exists and works on a project in scope (an enterprise user: it is
    theirs; a caller scoped to every project: any registered enterprise)."""
    row = conn.execute(
        "SELECT 1 FROM enterprises e WHERE e.uscc = %(uscc)s AND " + _ENTERPRISE_SCOPE,
        {"uscc": uscc, "pids": p.pids, "own": _own_enterprise(p)},
    ).fetchone()
    return row is not None


def person_visible(conn: psycopg.Connection, p: Principal, person_id: str) -> bool:
    """The person works (or worked) on a project in scope; an enterprise user sees only the
    persons their enterprise employs."""
    row = conn.execute(
        "SELECT 1 FROM persons pe WHERE pe.id = %(id)s"
        " AND (%(pids)s::text[] IS NULL OR EXISTS (SELECT 1 FROM project_workers pw"
        f" WHERE pw.person_id = pe.id AND {in_scope('pw.project_id')}))"
        " AND (%(own)s::text IS NULL OR pe.employer_uscc = %(own)s)",
        {"id": person_id, "pids": p.pids, "own": _own_enterprise(p)},
    ).fetchone()
    return row is not None


# --- permits -------------------------------------------------------------------------------------


class PermitOut(BaseModel):
    number: str = Field(description="施工许可证编号.")
    issued_on: date
    expires_on: date | None
    status: str
    issuer: str
    expired: bool = Field(description="Past its expiry date (whatever its status says).")


@router.get("/api/projects/{project_id}/permits")
def list_project_permits(
    project_id: str, p: Current, conn: Conn, settings: SettingsDep
) -> list[PermitOut]:
    """The project's construction permits, newest first."""
    scoped_project(conn, p, project_id)
    today = _today(settings.alerts_timezone)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT number, issued_on, expires_on, status, issuer FROM permits"
            " WHERE project_id = %s ORDER BY issued_on DESC, number",
            (project_id,),
        ).fetchall()
    return [
        PermitOut(**r, expired=r["expires_on"] is not None and r["expires_on"] < today)
        for r in rows
    ]


# --- enterprises ---------------------------------------------------------------------------------


class ProjectEnterpriseOut(BaseModel):
    uscc: str = Field(description="统一社会信用代码.")
    name: str
    role: str = Field(description="builder, general_contractor, subcontractor or supervisor.")
    credit_score: float | None = Field(description="Null: not yours to see (enterprise users).")
    credit_grade: str | None
    blacklisted: bool | None


@router.get("/api/projects/{project_id}/enterprises")
def list_project_enterprises(project_id: str, p: Current, conn: Conn) -> list[ProjectEnterpriseOut]:
    """The enterprises on the project, one row per role, with their credit standing (an
    enterprise user sees only their own enterprise's credit)."""
    scoped_project(conn, p, project_id)
    own = _own_enterprise(p)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT e.uscc, e.name, pe.role, e.credit_score::float8 AS credit_score,"
            " e.credit_grade, e.blacklisted FROM project_enterprises pe"
            " JOIN enterprises e ON e.uscc = pe.uscc WHERE pe.project_id = %s"
            " ORDER BY pe.role, e.name, e.uscc",
            (project_id,),
        ).fetchall()
    out = []
    for r in rows:
        if own is not None and r["uscc"] != own:
            r.update(credit_score=None, credit_grade=None, blacklisted=None)
        out.append(ProjectEnterpriseOut(**r))
    return out


class EnterpriseOut(BaseModel):
    uscc: str = Field(description="统一社会信用代码.")
    name: str
    kind: str
    credit_score: float
    credit_grade: str
    blacklisted: bool
    credit_computed_at: datetime | None = Field(description="Null: never computed.")


class EnterpriseRole(BaseModel):
    project_id: str
    project_name: str
    role: str


class EnterpriseDetail(EnterpriseOut):
    projects: list[EnterpriseRole] = Field(description="Its roles on projects in your scope.")


_ENTERPRISE_COLS = (
    "e.uscc, e.name, e.kind, e.credit_score::float8 AS credit_score, e.credit_grade,"
    " e.blacklisted, e.credit_computed_at"
)


@router.get("/api/enterprises")
def list_enterprises(
    p: Current,
    conn: Conn,
    page: Paging,
    q: Annotated[str | None, Query(max_length=100, description="Name contains.")] = None,
    grade: Annotated[str | None, Query(pattern="^[ABCD]$", description="Credit grade.")] = None,
    blacklisted: Annotated[bool | None, Query(description="Only (not) blacklisted.")] = None,
) -> Page[EnterpriseOut]:
    """Enterprises working on projects in your scope (an enterprise user: their own)."""
    where = (
        f" WHERE {_ENTERPRISE_SCOPE}"
        " AND (%(q)s::text IS NULL OR e.name ILIKE '%%' || %(q)s || '%%')"
        " AND (%(grade)s::text IS NULL OR e.credit_grade = %(grade)s)"
        " AND (%(black)s::boolean IS NULL OR e.blacklisted = %(black)s)"
    )
    args: dict[str, Any] = {
        "pids": p.pids,
        "own": _own_enterprise(p),
        "q": q,
        "grade": grade,
        "black": blacklisted,
    }
    total = conn.execute("SELECT count(*) FROM enterprises e" + where, args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_ENTERPRISE_COLS} FROM enterprises e{where}"
            " ORDER BY e.name, e.uscc LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
    return Page(
        items=[EnterpriseOut(**r) for r in rows],
        total=total[0] if total else 0,
        **page.model_dump(),
    )


@router.get("/api/enterprises/{uscc}")
def get_enterprise(uscc: str, p: Current, conn: Conn) -> EnterpriseDetail:
    """One enterprise with its roles on the projects in your scope."""
    uscc = uscc.upper()
    if not enterprise_visible(conn, p, uscc):
        raise not_found("enterprise")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_ENTERPRISE_COLS} FROM enterprises e WHERE e.uscc = %s", (uscc,)
        ).fetchone()
        roles = cur.execute(
            "SELECT pe.project_id, pr.name AS project_name, pe.role FROM project_enterprises pe"
            " JOIN projects pr ON pr.id = pe.project_id"
            f" WHERE pe.uscc = %(uscc)s AND {in_scope('pe.project_id')}"
            " ORDER BY pe.project_id, pe.role",
            {"uscc": uscc, "pids": p.pids},
        ).fetchall()
    if row is None:
        raise not_found("enterprise")
    return EnterpriseDetail(**row, projects=[EnterpriseRole(**r) for r in roles])


# --- workers -------------------------------------------------------------------------------------


class CertificateOut(BaseModel):
    type: str = Field(description="E.g. special_operations:tower_crane_driver.")
    number: str
    issued_on: date | None
    expires_on: date | None
    expired: bool


class WorkerOut(BaseModel):
    person_id: str
    name: str
    id_number_masked: str = Field(description="The resident ID number, masked.")
    employer_uscc: str | None
    employer_name: str | None
    trade: str
    role: str = Field(description="Role on this project, e.g. worker or project_manager.")
    status: str = Field(description="active or left (the registry's status).")
    joined_on: date
    left_on: date | None
    certificates: list[CertificateOut]


@router.get("/api/projects/{project_id}/workers")
def list_project_workers(
    project_id: str,
    request: Request,
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    page: Paging,
    q: Annotated[str | None, Query(max_length=100, description="Name contains.")] = None,
) -> Page[WorkerOut]:
    """The persons on the project with their certificates (personal data: audited)."""
    scoped_project(conn, p, project_id)
    where = (
        " WHERE pw.project_id = %(project)s"
        " AND (%(q)s::text IS NULL OR pe.name ILIKE '%%' || %(q)s || '%%')"
    )
    args: dict[str, Any] = {"project": project_id, "q": q}
    total = conn.execute(
        "SELECT count(*) FROM project_workers pw JOIN persons pe ON pe.id = pw.person_id" + where,
        args,
    ).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT pw.person_id, pe.name, pe.id_number_masked, pe.employer_uscc,"
            " e.name AS employer_name, pe.trade, pw.role, pe.status, pw.joined_on, pw.left_on"
            " FROM project_workers pw JOIN persons pe ON pe.id = pw.person_id"
            " LEFT JOIN enterprises e ON e.uscc = pe.employer_uscc"
            f"{where} ORDER BY pe.name, pw.person_id LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
        certs = cur.execute(
            "SELECT person_id, type, number, issued_on, expires_on FROM certificates"
            " WHERE person_id = ANY(%s) ORDER BY type, number",
            ([r["person_id"] for r in rows],),
        ).fetchall()
    today = _today(settings.alerts_timezone)
    by_person: dict[str, list[CertificateOut]] = {}
    for c in certs:
        pid = c.pop("person_id")
        expired = c["expires_on"] is not None and c["expires_on"] < today
        by_person.setdefault(pid, []).append(CertificateOut(**c, expired=expired))
    items = [WorkerOut(**r, certificates=by_person.get(r["person_id"], [])) for r in rows]
    personal_read(conn, p, request, "workers", len(items))
    return Page(items=items, total=total[0] if total else 0, **page.model_dump())


# --- devices -------------------------------------------------------------------------------------


class DeviceOut(BaseModel):
    id: str
    kind: str
    name: str
    gateway_id: str | None
    active: bool
    last_seen: datetime | None
    last_seq: int | None
    placement: dict[str, Any] = Field(description="Where it is on the BIM model or the map.")


@router.get("/api/projects/{project_id}/devices")
def list_project_devices(project_id: str, p: Current, conn: Conn) -> list[DeviceOut]:
    """The project's devices (never their broker credentials)."""
    scoped_project(conn, p, project_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, kind, name, gateway_id, active, last_seen, last_seq, placement"
            " FROM devices WHERE project_id = %s ORDER BY kind, id",
            (project_id,),
        ).fetchall()
    return [DeviceOut(**r) for r in rows]


# --- attendance ----------------------------------------------------------------------------------


class AttendanceRecord(BaseModel):
    time: datetime
    person_id: str
    person_name: str | None = Field(description="Null: not (or no longer) in the registry.")
    direction: str
    device_id: str
    similarity: float = Field(description="Face match similarity at the gate.")


class AttendanceOut(BaseModel):
    day: date
    timezone: str
    people: int = Field(description="Distinct people recorded that day.")
    total: int = Field(description="Records that day (items is one page of them).")
    limit: int
    offset: int
    items: list[AttendanceRecord]


def _today(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date()


@router.get("/api/projects/{project_id}/attendance")
def list_project_attendance(
    project_id: str,
    request: Request,
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    page: Paging,
    day: Annotated[
        date | None, Query(description="YYYY-MM-DD in the hub's time zone; default today.")
    ] = None,
) -> AttendanceOut:
    """One day's gate records with the people's names and a count of distinct people
    (personal data: audited)."""
    scoped_project(conn, p, project_id)
    tz = ZoneInfo(settings.alerts_timezone)
    day = day or _today(settings.alerts_timezone)
    if day >= date.max:
        raise ApiError(422, "invalid", "day: out of range")
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    args = {"project": project_id, "start": start, "end": end}
    where = " WHERE a.project_id = %(project)s AND a.time >= %(start)s AND a.time < %(end)s"
    summary = conn.execute(
        "SELECT count(*), count(DISTINCT a.worker_id) FROM attendance a" + where, args
    ).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.time, a.worker_id AS person_id, pe.name AS person_name, a.direction,"
            " a.device_id, a.similarity FROM attendance a"
            f" LEFT JOIN persons pe ON pe.id = a.worker_id{where}"
            " ORDER BY a.time, a.worker_id LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
    items = [AttendanceRecord(**r) for r in rows]
    personal_read(conn, p, request, "attendance", len(items))
    total, people = summary if summary else (0, 0)
    return AttendanceOut(
        day=day,
        timezone=settings.alerts_timezone,
        people=people,
        total=total,
        limit=page.limit,
        offset=page.offset,
        items=items,
    )
