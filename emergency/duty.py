"""Duty rosters (值班): an office — a regulator's (by district; the city's without one) or a
project's — with its contacts and shifts, and who is on duty at a moment.

Shifts are in local time (``settings.alerts_timezone``): on a date, or every week on the
weekdays given (1 = Monday ... 7 = Sunday). A shift whose end is not after its start runs into
the next day (20:00-08:00; 08:00-08:00 is 24 hours). A roster is replaced whole.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, model_validator

OfficeKind = Literal["regulator", "project"]
ShiftRole = Literal["leader", "duty"]


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    title: str = Field("", max_length=100, description="Position, e.g. 带班领导.")
    phone: str = Field("", max_length=40)


class ShiftIn(BaseModel):
    contact: str = Field(min_length=1, max_length=100, description="A contact's name.")
    role: ShiftRole = Field("duty", description="带班领导 leader or 值班员 duty.")
    on_date: date | None = Field(None, description="On this local date (or give weekdays).")
    weekdays: list[int] | None = Field(
        None, min_length=1, max_length=7, description="Every week on these (1 = Monday)."
    )
    start: time = Field(description="Local start time.")
    end: time = Field(description="Local end time; not after start: the next day.")

    @model_validator(mode="after")
    def _when(self) -> ShiftIn:
        if (self.on_date is None) == (self.weekdays is None):
            raise ValueError("give a date or weekdays, not both")
        if self.weekdays is not None:
            if any(not 1 <= d <= 7 for d in self.weekdays):
                raise ValueError("weekdays are 1 (Monday) to 7 (Sunday)")
            self.weekdays = sorted(set(self.weekdays))
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("shift times are local times, without a zone")
        return self


class RosterIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Office name.")
    phone: str = Field("", max_length=40, description="Duty phone of the office.")
    contacts: list[ContactIn] = Field(default_factory=list, max_length=200)
    shifts: list[ShiftIn] = Field(default_factory=list, max_length=2000)

    @model_validator(mode="after")
    def _contacts(self) -> RosterIn:
        names = [c.name for c in self.contacts]
        if len(set(names)) != len(names):
            raise ValueError("contact names must be unique within an office")
        unknown = sorted({s.contact for s in self.shifts} - set(names))
        if unknown:
            raise ValueError(f"shifts name contacts not listed: {', '.join(unknown)}")
        return self


class Contact(ContactIn):
    pass


class Shift(ShiftIn):
    pass


class Roster(BaseModel):
    kind: OfficeKind
    district_code: str | None
    project_id: str | None
    name: str
    phone: str
    contacts: list[Contact]
    shifts: list[Shift]
    updated_by: str
    updated_at: datetime


class OnDuty(BaseModel):
    name: str
    title: str
    phone: str
    role: ShiftRole
    starts_at: datetime = Field(description="This shift's start, local time with offset.")
    ends_at: datetime
    recurring: bool = Field(description="A weekly shift (False: a dated one).")


class OnDutyOut(BaseModel):
    kind: OfficeKind
    district_code: str | None
    project_id: str | None
    office: str
    phone: str
    at: datetime
    on_duty: list[OnDuty]


def _span(day: date, s: ShiftIn, tz: tzinfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, s.start, tz)
    end_day = day if s.end > s.start else day + timedelta(days=1)
    return start, datetime.combine(end_day, s.end, tz)


def on_duty(roster: Roster, at: datetime, tz: tzinfo) -> list[OnDuty]:
    """Who is on duty at ``at`` (aware): leaders first, dated shifts before weekly ones."""
    local = at.astimezone(tz)
    contacts = {c.name: c for c in roster.contacts}
    found: list[OnDuty] = []
    for s in roster.shifts:
        for day in (local.date(), local.date() - timedelta(days=1)):
            if s.on_date is not None and s.on_date != day:
                continue
            if s.weekdays is not None and day.isoweekday() not in s.weekdays:
                continue
            start, end = _span(day, s, tz)
            if start <= local < end:
                c = contacts[s.contact]
                found.append(
                    OnDuty(
                        name=c.name,
                        title=c.title,
                        phone=c.phone,
                        role=s.role,
                        starts_at=start,
                        ends_at=end,
                        recurring=s.weekdays is not None,
                    )
                )
                break
    found.sort(key=lambda d: (d.role != "leader", d.recurring, d.name))
    return found


def _office_id(
    conn: psycopg.Connection, kind: OfficeKind, district: str | None, project: str | None
) -> int | None:
    if kind == "project":
        row = conn.execute(
            "SELECT id FROM emergency_duty_offices WHERE kind = 'project' AND project_id = %s",
            (project,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT id FROM emergency_duty_offices WHERE kind = 'regulator'"
            " AND district_code IS NOT DISTINCT FROM %s",
            (district,),
        ).fetchone()
    return int(row[0]) if row else None


def put_roster(
    conn: psycopg.Connection,
    kind: OfficeKind,
    district: str | None,
    project: str | None,
    roster: RosterIn,
    by: str,
) -> None:
    """Replace the office's roster (creating the office)."""
    with conn.transaction():
        oid = _office_id(conn, kind, district, project)
        if oid is None:
            row = conn.execute(
                "INSERT INTO emergency_duty_offices (kind, district_code, project_id, name,"
                " phone, updated_by) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (kind, district, project, roster.name, roster.phone, by),
            ).fetchone()
            assert row is not None
            oid = int(row[0])
        else:
            conn.execute(
                "UPDATE emergency_duty_offices SET name = %s, phone = %s, updated_by = %s,"
                " updated_at = now() WHERE id = %s",
                (roster.name, roster.phone, by, oid),
            )
            conn.execute("DELETE FROM emergency_duty_contacts WHERE office_id = %s", (oid,))
        ids: dict[str, int] = {}
        for i, c in enumerate(roster.contacts):
            got = conn.execute(
                "INSERT INTO emergency_duty_contacts (office_id, name, title, phone, position)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (oid, c.name, c.title, c.phone, i),
            ).fetchone()
            assert got is not None
            ids[c.name] = int(got[0])
        conn.cursor().executemany(
            "INSERT INTO emergency_duty_shifts (office_id, contact_id, role, on_date, weekdays,"
            " start_time, end_time, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (oid, ids[s.contact], s.role, s.on_date, s.weekdays, s.start, s.end, i)
                for i, s in enumerate(roster.shifts)
            ],
        )


def get_roster(
    conn: psycopg.Connection, kind: OfficeKind, district: str | None, project: str | None
) -> Roster | None:
    oid = _office_id(conn, kind, district, project)
    if oid is None:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        office: dict[str, Any] | None = cur.execute(
            "SELECT kind, district_code, project_id, name, phone, updated_by, updated_at"
            " FROM emergency_duty_offices WHERE id = %s",
            (oid,),
        ).fetchone()
        assert office is not None
        contacts = cur.execute(
            "SELECT name, title, phone FROM emergency_duty_contacts WHERE office_id = %s"
            " ORDER BY position",
            (oid,),
        ).fetchall()
        shifts = cur.execute(
            "SELECT c.name AS contact, s.role, s.on_date, s.weekdays,"
            " s.start_time AS start, s.end_time AS end FROM emergency_duty_shifts s"
            " JOIN emergency_duty_contacts c ON c.id = s.contact_id WHERE s.office_id = %s"
            " ORDER BY s.position",
            (oid,),
        ).fetchall()
    return Roster(
        **office,
        contacts=[Contact(**c) for c in contacts],
        shifts=[Shift(**s) for s in shifts],
    )


def on_duty_now(roster: Roster, at: datetime, tz: tzinfo) -> OnDutyOut:
    return OnDutyOut(
        kind=roster.kind,
        district_code=roster.district_code,
        project_id=roster.project_id,
        office=roster.name,
        phone=roster.phone,
        at=at.astimezone(tz),
        on_duty=on_duty(roster, at, tz),
    )
