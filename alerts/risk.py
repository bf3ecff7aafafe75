"""Per-project risk: a score with the factors that make it, for the regulator's risk ranking
(``GET /api/stats/risk-ranking``) and the risk-weighted spot-check draw (``inspections.draw``).

Risk score points (hub practice, no standard gives them): an open alarm weighs most, an
overdue rectification shows the site is not acting; the weakest enterprise's credit grade and
the permit say how the project stands overall; an emergency incident (事故) in the last
``INCIDENT_DAYS`` weighs heavily. Every point comes with a factor that says where it is from,
so a ranking or a draw weight can always be explained.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
from pydantic import BaseModel, Field

from alerts.correlate import permit_of

OPEN_ALARM_POINTS = 10
OPEN_WARNING_POINTS = 3
OVERDUE_POINTS = 8
GRADE_POINTS = {"A": 0, "B": 5, "C": 15, "D": 30}
NO_VALID_PERMIT_POINTS = 25
INCIDENT_POINTS = 20
INCIDENT_DAYS = 365


class RiskFactor(BaseModel):
    factor: str
    value: Any
    points: int
    note: str


class ProjectRisk(BaseModel):
    project_id: str
    name: str
    district_code: str | None
    open_alarms: int = Field(description="Alarms not yet closed (verified).")
    open_warnings: int = Field(description="Warnings not yet closed (verified).")
    overdue_rectifications: int
    lowest_credit_grade: str | None = Field(description="The weakest grade among its enterprises.")
    permit_state: str = Field(description="valid, missing, expired, suspended or revoked.")
    incidents: int = Field(0, description="Emergency incidents in the last year (if recorded).")
    score: int = Field(description="The sum of the factors' points.")
    factors: list[RiskFactor]


def _factor(factor: str, value: Any, points: int, note: str) -> RiskFactor:
    return RiskFactor(factor=factor, value=value, points=points, note=note)


def risk_of(
    project_id: str,
    name: str,
    district: str | None,
    *,
    alarms: int,
    warnings: int,
    overdue: int,
    grade: str | None,
    permit_state: str,
    incidents: int = 0,
) -> ProjectRisk:
    """The score of one project from its figures (no database)."""
    factors: list[RiskFactor] = []
    if alarms:
        note = f"{alarms} 报警 alarm(s) not closed, {OPEN_ALARM_POINTS} points each"
        factors.append(_factor("open_alarms", alarms, alarms * OPEN_ALARM_POINTS, note))
    if warnings:
        note = f"{warnings} 预警 warning(s) not closed, {OPEN_WARNING_POINTS} points each"
        factors.append(_factor("open_warnings", warnings, warnings * OPEN_WARNING_POINTS, note))
    if overdue:
        note = f"{overdue} rectification(s) past their deadline, {OVERDUE_POINTS} each"
        factors.append(_factor("overdue_rectifications", overdue, overdue * OVERDUE_POINTS, note))
    if grade and GRADE_POINTS.get(grade, 0):
        note = f"an enterprise of the project has credit grade {grade}"
        factors.append(_factor("credit_grade", grade, GRADE_POINTS[grade], note))
    if permit_state != "valid":
        note = f"no valid construction permit ({permit_state})"
        factors.append(_factor("permit", permit_state, NO_VALID_PERMIT_POINTS, note))
    if incidents:
        note = (
            f"{incidents} incident(s) (事故) in the last {INCIDENT_DAYS} days, "
            f"{INCIDENT_POINTS} points each"
        )
        factors.append(_factor("incidents", incidents, incidents * INCIDENT_POINTS, note))
    return ProjectRisk(
        project_id=project_id,
        name=name,
        district_code=district,
        open_alarms=alarms,
        open_warnings=warnings,
        overdue_rectifications=overdue,
        lowest_credit_grade=grade,
        permit_state=permit_state,
        incidents=incidents,
        score=sum(f.points for f in factors),
        factors=factors,
    )


def incident_counts(
    conn: psycopg.Connection, project_ids: list[str], today: date, days: int = INCIDENT_DAYS
) -> dict[str, int]:
    """Incidents (事故) per project that occurred in the last ``days``, from the emergency
    module's ``emergency_incidents`` (migration 0012); empty where that table is absent."""
    found = conn.execute("SELECT to_regclass('emergency_incidents')").fetchone()
    if found is None or found[0] is None:
        return {}
    rows = conn.execute(
        "SELECT project_id, count(*)::int FROM emergency_incidents"
        " WHERE project_id = ANY(%s) AND occurred_at >= %s GROUP BY project_id",
        (project_ids, today - timedelta(days=days)),
    ).fetchall()
    return {pid: n for pid, n in rows}


def project_risks(
    conn: psycopg.Connection,
    today: date,
    *,
    pids: list[str] | None = None,
    district: str | None = None,
    statuses: list[str] | None = None,
) -> list[ProjectRisk]:
    """The risk of every project among ``pids`` (None: all), of ``district`` and with one of
    ``statuses`` (None: any), riskiest first (then most open alarms, then by id)."""
    rows = conn.execute(
        "SELECT pr.id, pr.name, pr.district_code,"
        " count(a.id) FILTER (WHERE a.severity = 'alarm')::int,"
        " count(a.id) FILTER (WHERE a.severity = 'warning')::int,"
        " count(a.id) FILTER (WHERE a.status = 'rectifying' AND a.deadline < now())::int,"
        " (SELECT max(e.credit_grade) FROM project_enterprises pe"
        "  JOIN enterprises e ON e.uscc = pe.uscc WHERE pe.project_id = pr.id)"
        " FROM projects pr LEFT JOIN alerts a ON a.project_id = pr.id AND a.status <> 'closed'"
        " WHERE (%(pids)s::text[] IS NULL OR pr.id = ANY(%(pids)s::text[]))"
        " AND (%(district)s::text IS NULL OR pr.district_code = %(district)s)"
        " AND (%(statuses)s::text[] IS NULL OR pr.status = ANY(%(statuses)s::text[]))"
        " GROUP BY pr.id",
        {"pids": pids, "district": district, "statuses": statuses},
    ).fetchall()
    incidents = incident_counts(conn, [r[0] for r in rows], today)
    out = [
        risk_of(
            pid,
            name,
            dist,
            alarms=alarms,
            warnings=warnings,
            overdue=overdue,
            grade=grade.strip() if grade else grade,
            permit_state=permit_of(conn, pid, today).state,
            incidents=incidents.get(pid, 0),
        )
        for pid, name, dist, alarms, warnings, overdue, grade in rows
    ]
    out.sort(key=lambda r: (-r.score, -r.open_alarms, r.project_id))
    return out
