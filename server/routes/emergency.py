"""Emergency (应急, issue 8): incident reports graded per Order 493 with the one-hour deadline
and every revision, early-warning broadcasts with acknowledgements, duty rosters.

All scoped: an incident, a warning's targets and a project's roster outside the caller's scope
read as absent (404). Officers report incidents of their own projects and acknowledge
warnings for them; regulators register incidents they learned of, revise (核报), issue and
cancel warnings and keep their district's roster; data-sharing principals only read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field

from emergency import duty as dt
from emergency import incidents as inc
from emergency import warnings as wn
from emergency.grading import CITATION, Grade, grade
from server.deps import Conn, Current, SettingsDep, require, scoped_project
from server.errors import ApiError, forbidden, not_found
from server.pagination import Page, Paging
from server.principal import Principal

router = APIRouter(prefix="/api/emergency", tags=["emergency"])

Reporter = Annotated[Principal, Depends(require("officer", "admin"))]
Reviser = Annotated[Principal, Depends(require("officer", "regulator", "admin"))]
Regulator = Annotated[Principal, Depends(require("regulator", "admin"))]
SiteSide = Annotated[Principal, Depends(require("officer", "admin"))]
CITY = "city"


def _by(p: Principal) -> inc.By:
    a = p.actor()
    return inc.By(a.name, a.role)


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid", message)


# --- grading ------------------------------------------------------------------------------------


class GradeOut(BaseModel):
    grade: Grade
    label: str = Field(description="一般 / 较大 / 重大 / 特别重大事故.")
    reason: str = Field(description="The figures that set the grade.")
    deciding: list[str]
    citation: str = CITATION


@router.post("/grade")
def grade_incident_figures(body: inc.Figures, p: Current) -> GradeOut:
    """The Order 493 grade these figures give (nothing is stored)."""
    g = grade(body.deaths, body.serious_injuries, body.direct_loss_yuan)
    return GradeOut(grade=g.grade, label=g.label, reason=g.reason, deciding=list(g.deciding))


# --- incidents ----------------------------------------------------------------------------------


def _scoped_incident(conn: Conn, p: Principal, incident_id: int) -> inc.IncidentDetail:
    got = inc.get(conn, incident_id)
    if got is None or not p.sees(got.project_id):
        raise not_found("incident")
    return got


@router.post("/incidents", status_code=201)
def report_incident(body: inc.IncidentIn, p: Reporter, conn: Conn) -> inc.IncidentDetail:
    """The first report of an incident of one's project; the report time is now, the grade
    follows from the figures, the one-hour deadline from the incident time."""
    scoped_project(conn, p, body.project_id)
    iid = inc.report(conn, body, _by(p))
    return _scoped_incident(conn, p, iid)


@router.post("/incidents/notices", status_code=201)
def register_incident_notice(body: inc.NoticeIn, p: Regulator, conn: Conn) -> inc.IncidentDetail:
    """Register an incident the project has not reported yet: it awaits the project's report
    and is overdue once the hour is up."""
    scoped_project(conn, p, body.project_id)
    iid = inc.register_notice(conn, body, _by(p))
    return _scoped_incident(conn, p, iid)


@router.get("/incidents")
def list_incidents(
    p: Current,
    conn: Conn,
    page: Paging,
    project: Annotated[str | None, Query(max_length=64, description="Project id.")] = None,
    grade: Annotated[list[Grade] | None, Query(description="Grade (repeatable).")] = None,
    late_only: Annotated[bool, Query(description="Only late or overdue reports.")] = False,
    since: Annotated[datetime | None, Query(description="Occurred at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Occurred before.")] = None,
) -> Page[inc.Incident]:
    """Incidents in scope, newest first, with grade, reason, deadline and its status."""
    items, total = inc.list_incidents(
        conn,
        p.pids,
        project=project,
        grades=[g.value for g in grade] if grade else None,
        late_only=late_only,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(items=items, total=total, **page.model_dump())


@router.get("/incidents/late")
def list_late_incident_reports(
    p: Current,
    conn: Conn,
    project: Annotated[str | None, Query(max_length=64, description="Project id.")] = None,
) -> list[inc.Incident]:
    """Incidents reported after the one-hour deadline, or not reported and past it."""
    items, _ = inc.list_incidents(conn, p.pids, project=project, late_only=True, limit=500)
    return items


@router.get("/incidents/{incident_id}")
def get_incident(incident_id: int, p: Current, conn: Conn) -> inc.IncidentDetail:
    """One incident with every revision."""
    return _scoped_incident(conn, p, incident_id)


@router.post("/incidents/{incident_id}/follow-ups", status_code=201)
def report_incident_follow_up(
    incident_id: int, body: inc.FollowUpIn, p: Reviser, conn: Conn
) -> inc.IncidentDetail:
    """A follow-up report (核报 / 补报): revised figures re-grade; the history keeps all."""
    _scoped_incident(conn, p, incident_id)
    inc.follow_up(conn, incident_id, body, _by(p))
    return _scoped_incident(conn, p, incident_id)


# --- warnings -----------------------------------------------------------------------------------


class AcknowledgeIn(BaseModel):
    project_id: str | None = Field(
        None, max_length=64, description="The project; None: all of one's targeted projects."
    )
    note: str = Field("", max_length=2000, description="Measures taken, e.g. cranes stopped.")


class CancelIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def _scoped_warning(conn: Conn, p: Principal, warning_id: int) -> wn.WarningDetail:
    got = wn.get_warning(conn, warning_id, p.pids)
    if got is None:
        raise not_found("warning")
    return got


@router.post("/warnings", status_code=201)
def issue_warning(body: wn.WarningIn, p: Regulator, conn: Conn) -> wn.WarningDetail:
    """Warn a district, a list of projects or every project of one's scope; overrides make
    rules stricter for the targeted projects while the warning is in force."""
    try:
        wid = wn.issue(conn, body, p.pids, p.label)
    except LookupError as exc:
        raise not_found(str(exc.args[0])) from None
    except wn.WarningError as exc:
        raise _invalid(str(exc)) from None
    return _scoped_warning(conn, p, wid)


@router.get("/warnings")
def list_warnings(
    p: Current,
    conn: Conn,
    page: Paging,
    state: Annotated[list[wn.State] | None, Query(description="State (repeatable).")] = None,
    kind: Annotated[wn.WarningKind | None, Query(description="Kind.")] = None,
    project: Annotated[str | None, Query(max_length=64, description="Targeting it.")] = None,
) -> Page[wn.WarningOut]:
    """Warnings with a target in scope, newest first; counts are of targets in scope."""
    items, total = wn.list_warnings(
        conn,
        p.pids,
        states=list(state) if state else None,
        kind=kind,
        project=project,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(items=items, total=total, **page.model_dump())


@router.get("/warnings/awaiting-acknowledgement")
def list_warnings_awaiting_acknowledgement(
    p: Current,
    conn: Conn,
    project: Annotated[str | None, Query(max_length=64, description="Project id.")] = None,
) -> list[wn.Awaiting]:
    """Targeted projects in scope that have not acknowledged a warning not yet over."""
    return wn.awaiting(conn, p.pids, project=project)


@router.get("/warnings/{warning_id}")
def get_warning(warning_id: int, p: Current, conn: Conn) -> wn.WarningDetail:
    """One warning with each targeted project in scope and its acknowledgement."""
    return _scoped_warning(conn, p, warning_id)


@router.post("/warnings/{warning_id}/acknowledge")
def acknowledge_warning(
    warning_id: int, body: AcknowledgeIn, p: SiteSide, conn: Conn
) -> wn.WarningDetail:
    """Acknowledge a warning for one's project (or all of one's targeted projects)."""
    w = _scoped_warning(conn, p, warning_id)
    mine = [t.project_id for t in w.projects]
    if body.project_id is not None:
        if body.project_id not in mine:
            raise not_found("targeted project")
        mine = [body.project_id]
    try:
        wn.acknowledge(conn, warning_id, mine, p.label, body.note)
    except wn.WarningError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return _scoped_warning(conn, p, warning_id)


@router.post("/warnings/{warning_id}/cancel")
def cancel_warning(warning_id: int, body: CancelIn, p: Regulator, conn: Conn) -> wn.WarningDetail:
    """Cancel a warning before its end (its threshold overrides stop at once). A regulator
    may cancel only a warning whose every target is in its scope."""
    _scoped_warning(conn, p, warning_id)
    if p.pids is not None and not set(wn.targets_of(conn, warning_id)) <= set(p.pids):
        raise forbidden("the warning reaches beyond your scope")
    try:
        wn.cancel(conn, warning_id, p.label, body.reason)
    except wn.WarningError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return _scoped_warning(conn, p, warning_id)


# --- duty ---------------------------------------------------------------------------------------


def _district(conn: Conn, district: str) -> str | None:
    """The district code of the path ('city': None); 404 when there is no such district."""
    if district == CITY:
        return None
    if not conn.execute("SELECT 1 FROM districts WHERE code = %s", (district,)).fetchone():
        raise not_found("district")
    return district


def _at(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(ZoneInfo("UTC"))


AtQuery = Annotated[
    AwareDatetime | None, Query(description="The moment (with a time zone); default now.")
]


@router.put("/duty/projects/{project_id}")
def put_project_duty_roster(
    project_id: str, body: dt.RosterIn, p: SiteSide, conn: Conn
) -> dt.Roster:
    """Replace a project's duty roster: its contacts and shifts (local time)."""
    scoped_project(conn, p, project_id)
    dt.put_roster(conn, "project", None, project_id, body, p.label)
    got = dt.get_roster(conn, "project", None, project_id)
    assert got is not None
    return got


@router.get("/duty/projects/{project_id}")
def get_project_duty_roster(project_id: str, p: Current, conn: Conn) -> dt.Roster:
    scoped_project(conn, p, project_id)
    got = dt.get_roster(conn, "project", None, project_id)
    if got is None:
        raise not_found("duty roster")
    return got


class ProjectOnDuty(BaseModel):
    project: dt.OnDutyOut | None = Field(description="The project's office; None: no roster.")
    regulator: dt.OnDutyOut | None = Field(
        description="The regulator's office of the project's district (else the city's)."
    )


@router.get("/duty/projects/{project_id}/now")
def who_is_on_duty_for_project(
    project_id: str, p: Current, conn: Conn, settings: SettingsDep, at: AtQuery = None
) -> ProjectOnDuty:
    """Who is on duty for a project now: its own office and its regulator's."""
    scoped_project(conn, p, project_id)
    tz, moment = ZoneInfo(settings.alerts_timezone), _at(at)
    own = dt.get_roster(conn, "project", None, project_id)
    row = conn.execute("SELECT district_code FROM projects WHERE id = %s", (project_id,)).fetchone()
    reg = dt.get_roster(conn, "regulator", row[0], None) if row and row[0] else None
    reg = reg or dt.get_roster(conn, "regulator", None, None)
    return ProjectOnDuty(
        project=dt.on_duty_now(own, moment, tz) if own else None,
        regulator=dt.on_duty_now(reg, moment, tz) if reg else None,
    )


@router.put("/duty/districts/{district}")
def put_district_duty_roster(
    district: str, body: dt.RosterIn, p: Regulator, conn: Conn
) -> dt.Roster:
    """Replace a regulator's office roster: a district's (its code) or the city's ('city').
    A district regulator keeps its own district's."""
    code = _district(conn, district)
    if p.role != "admin" and p.district is not None and p.district != code:
        raise forbidden("a district regulator keeps its own district's roster")
    dt.put_roster(conn, "regulator", code, None, body, p.label)
    got = dt.get_roster(conn, "regulator", code, None)
    assert got is not None
    return got


@router.get("/duty/districts/{district}")
def get_district_duty_roster(district: str, p: Current, conn: Conn) -> dt.Roster:
    """A regulator's office roster (every principal may read whom to call)."""
    got = dt.get_roster(conn, "regulator", _district(conn, district), None)
    if got is None:
        raise not_found("duty roster")
    return got


@router.get("/duty/districts/{district}/now")
def who_is_on_duty_for_district(
    district: str, p: Current, conn: Conn, settings: SettingsDep, at: AtQuery = None
) -> dt.OnDutyOut:
    """Who is on duty now at a regulator's office ('city' for the city's)."""
    got = dt.get_roster(conn, "regulator", _district(conn, district), None)
    if got is None:
        raise not_found("duty roster")
    return dt.on_duty_now(got, _at(at), ZoneInfo(settings.alerts_timezone))
