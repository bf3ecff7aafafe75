"""Incident reports (事故通报): the first report, follow-up reports (核报 / 补报) that revise the
figures and re-grade, every revision kept, and the one-hour reporting deadline.

Order 493 art. 9: the unit's head reports to the county-level authorities within one hour
(1小时内); the hub counts the hour from the incident time. An incident a regulator learned of
elsewhere can be registered (a notice) before the project reports: it is *awaiting* its report
until the hour is up, then *overdue*. A report made after the hour is *late*. Art. 13: casualty
figures that change within 30 days are reported again (补报) — a follow-up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, Field

from emergency.grading import CITATION, LABELS, Grade, grade

REPORT_DEADLINE = timedelta(hours=1)
DEADLINE_SOURCE = "《生产安全事故报告和调查处理条例》(国务院令第493号) 第九条: 1小时内报告"
DeadlineStatus = Literal["on_time", "late", "awaiting", "overdue"]
ReportKind = Literal["notice", "initial", "follow_up"]


@dataclass(frozen=True)
class By:
    """Who wrote a revision."""

    name: str
    role: str


class Figures(BaseModel):
    deaths: int = Field(0, ge=0, le=100_000, description="死亡 deaths.")
    serious_injuries: int = Field(
        0, ge=0, le=100_000, description="重伤 serious injuries (acute industrial poisoning incl.)."
    )
    direct_loss_yuan: float = Field(
        0, ge=0, le=1e13, description="直接经济损失 direct economic loss, yuan."
    )


class IncidentIn(Figures):
    """The first report of an incident (事故快报)."""

    project_id: str = Field(min_length=1, max_length=64)
    occurred_at: AwareDatetime = Field(description="When it happened (with a time zone).")
    place: str = Field(min_length=1, max_length=500, description="Where on the site.")
    summary: str = Field(min_length=1, max_length=5000, description="What happened.")
    measures: str = Field("", max_length=5000, description="Measures taken.")
    reporter: str = Field(min_length=1, max_length=200, description="Reporter and phone.")


class NoticeIn(Figures):
    """An incident a regulator learned of before the project reported it."""

    project_id: str = Field(min_length=1, max_length=64)
    occurred_at: AwareDatetime
    place: str = Field("", max_length=500)
    summary: str = Field(min_length=1, max_length=5000)
    note: str = Field("", max_length=2000, description="How it became known.")


class FollowUpIn(BaseModel):
    """A follow-up report: the figures and text it revises (the others stay as they were)."""

    deaths: int | None = Field(None, ge=0, le=100_000)
    serious_injuries: int | None = Field(None, ge=0, le=100_000)
    direct_loss_yuan: float | None = Field(None, ge=0, le=1e13)
    place: str | None = Field(None, min_length=1, max_length=500)
    summary: str | None = Field(None, min_length=1, max_length=5000)
    measures: str | None = Field(None, max_length=5000)
    reporter: str | None = Field(None, min_length=1, max_length=200)
    note: str = Field("", max_length=2000, description="What changed and why.")


class Revision(BaseModel):
    revision: int
    kind: ReportKind
    at: datetime
    by_name: str
    by_role: str
    reporter: str
    place: str
    summary: str
    deaths: int
    serious_injuries: int
    direct_loss_yuan: float
    measures: str
    note: str
    grade: Grade
    grade_reason: str


class Incident(BaseModel):
    id: int
    project_id: str
    occurred_at: datetime
    reported_at: datetime | None = Field(description="First report; None: not yet reported.")
    place: str
    summary: str
    deaths: int
    serious_injuries: int
    direct_loss_yuan: float
    measures: str
    reporter: str
    grade: Grade
    grade_label: str = Field(description="一般 / 较大 / 重大 / 特别重大事故.")
    grade_reason: str = Field(description="The figures that set the grade.")
    grade_citation: str = CITATION
    revision: int
    deadline: datetime = Field(description="Report due: one hour after the incident.")
    deadline_status: DeadlineStatus
    minutes_late: float | None = Field(
        description="How far past the deadline the report came (or, unreported, is now)."
    )
    deadline_source: str = DEADLINE_SOURCE
    created_by: str
    created_at: datetime
    updated_at: datetime


class IncidentDetail(Incident):
    history: list[Revision] = Field(description="Every revision, oldest first.")


def deadline_of(occurred_at: datetime) -> datetime:
    return occurred_at + REPORT_DEADLINE


def deadline_status(
    occurred_at: datetime, reported_at: datetime | None, now: datetime
) -> tuple[DeadlineStatus, float | None]:
    """On time, late (reported after the hour), awaiting (not reported, hour not up) or
    overdue (not reported, hour up); and the minutes past the deadline when late/overdue."""
    due = deadline_of(occurred_at)
    if reported_at is not None:
        if reported_at <= due:
            return "on_time", None
        return "late", round((reported_at - due).total_seconds() / 60, 1)
    if now <= due:
        return "awaiting", None
    return "overdue", round((now - due).total_seconds() / 60, 1)


_COLUMNS = (
    "id, project_id, occurred_at, reported_at, place, summary, deaths, serious_injuries, "
    "direct_loss_yuan, measures, reporter, grade, grade_reason, revision, created_by, "
    "created_at, updated_at"
)


def _incident(row: dict[str, Any], now: datetime) -> Incident:
    status, late = deadline_status(row["occurred_at"], row["reported_at"], now)
    return Incident(
        **row,
        grade_label=LABELS[Grade(row["grade"])],
        deadline=deadline_of(row["occurred_at"]),
        deadline_status=status,
        minutes_late=late,
    )


def _now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def _revise(
    conn: psycopg.Connection,
    incident_id: int,
    revision: int,
    kind: ReportKind,
    by: By,
    values: dict[str, Any],
    note: str,
) -> None:
    g = grade(values["deaths"], values["serious_injuries"], values["direct_loss_yuan"])
    conn.execute(
        "INSERT INTO emergency_incident_reports (incident_id, revision, kind, by_name, by_role,"
        " reporter, place, summary, deaths, serious_injuries, direct_loss_yuan, measures, note,"
        " grade, grade_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s)",
        (
            incident_id,
            revision,
            kind,
            by.name,
            by.role,
            values["reporter"],
            values["place"],
            values["summary"],
            values["deaths"],
            values["serious_injuries"],
            values["direct_loss_yuan"],
            values["measures"],
            note,
            g.grade.value,
            g.reason,
        ),
    )
    conn.execute(
        "UPDATE emergency_incidents SET reporter = %s, place = %s, summary = %s, deaths = %s,"
        " serious_injuries = %s, direct_loss_yuan = %s, measures = %s, grade = %s,"
        " grade_reason = %s, revision = %s, updated_at = now(),"
        " reported_at = CASE WHEN %s THEN coalesce(reported_at, now()) ELSE reported_at END"
        " WHERE id = %s",
        (
            values["reporter"],
            values["place"],
            values["summary"],
            values["deaths"],
            values["serious_injuries"],
            values["direct_loss_yuan"],
            values["measures"],
            g.grade.value,
            g.reason,
            revision,
            kind != "notice",
            incident_id,
        ),
    )


def _create(conn: psycopg.Connection, project_id: str, occurred_at: datetime, by: By) -> int:
    g = grade(0, 0, 0)
    row = conn.execute(
        "INSERT INTO emergency_incidents (project_id, occurred_at, grade, grade_reason,"
        " revision, created_by) VALUES (%s, %s, %s, %s, 0, %s) RETURNING id",
        (project_id, occurred_at, g.grade.value, g.reason, f"{by.role}:{by.name}"),
    ).fetchone()
    assert row is not None
    return int(row[0])


def report(conn: psycopg.Connection, data: IncidentIn, by: By) -> int:
    """File the first report of a new incident; its time is the report time."""
    with conn.transaction():
        iid = _create(conn, data.project_id, data.occurred_at, by)
        _revise(conn, iid, 1, "initial", by, data.model_dump(), "")
    return iid


def register_notice(conn: psycopg.Connection, data: NoticeIn, by: By) -> int:
    """Register an incident the project has not reported yet (the deadline runs)."""
    values = {**data.model_dump(), "measures": "", "reporter": ""}
    with conn.transaction():
        iid = _create(conn, data.project_id, data.occurred_at, by)
        _revise(conn, iid, 1, "notice", by, values, data.note)
    return iid


def follow_up(conn: psycopg.Connection, incident_id: int, data: FollowUpIn, by: By) -> None:
    """A revision: the figures and text given replace the last ones and the grade follows.
    The first one after a notice is the project's first report (its time is reported_at)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM emergency_incidents WHERE id = %s FOR UPDATE",
            (incident_id,),
        ).fetchone()
        if row is None:
            raise LookupError(incident_id)
        values = {
            k: row[k]
            for k in (
                "deaths",
                "serious_injuries",
                "direct_loss_yuan",
                "place",
                "summary",
                "measures",
                "reporter",
            )
        }
        values.update(data.model_dump(exclude_none=True, exclude={"note"}))
        kind: ReportKind = "initial" if row["reported_at"] is None else "follow_up"
        _revise(conn, incident_id, row["revision"] + 1, kind, by, values, data.note)


def get(conn: psycopg.Connection, incident_id: int) -> IncidentDetail | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM emergency_incidents WHERE id = %s", (incident_id,)
        ).fetchone()
        if row is None:
            return None
        revs = cur.execute(
            "SELECT revision, kind, at, by_name, by_role, reporter, place, summary, deaths,"
            " serious_injuries, direct_loss_yuan, measures, note, grade, grade_reason"
            " FROM emergency_incident_reports WHERE incident_id = %s ORDER BY revision",
            (incident_id,),
        ).fetchall()
    base = _incident(row, _now(conn))
    return IncidentDetail(**base.model_dump(), history=[Revision(**r) for r in revs])


def project_of(conn: psycopg.Connection, incident_id: int) -> str | None:
    row = conn.execute(
        "SELECT project_id FROM emergency_incidents WHERE id = %s", (incident_id,)
    ).fetchone()
    return row[0] if row else None


_LATE = (
    "(reported_at > occurred_at + interval '1 hour'"
    " OR (reported_at IS NULL AND now() > occurred_at + interval '1 hour'))"
)


def list_incidents(
    conn: psycopg.Connection,
    pids: list[str] | None,
    *,
    project: str | None = None,
    grades: list[str] | None = None,
    late_only: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Incident], int]:
    """Incidents of ``pids`` (None: all), newest first; ``late_only``: late or overdue."""
    where = (
        " WHERE (%(pids)s::text[] IS NULL OR project_id = ANY(%(pids)s::text[]))"
        " AND (%(project)s::text IS NULL OR project_id = %(project)s)"
        " AND (%(grades)s::text[] IS NULL OR grade = ANY(%(grades)s::text[]))"
        f" AND (NOT %(late)s OR {_LATE})"
        " AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR occurred_at < %(until)s)"
    )
    args = {
        "pids": pids,
        "project": project,
        "grades": grades,
        "late": late_only,
        "since": since,
        "until": until,
    }
    total = conn.execute("SELECT count(*) FROM emergency_incidents" + where, args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM emergency_incidents" + where + " ORDER BY occurred_at DESC,"
            " id DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": limit, "offset": offset},
        ).fetchall()
    now = _now(conn)
    return [_incident(r, now) for r in rows], int(total[0]) if total else 0
