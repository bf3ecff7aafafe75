"""Inspection records (一公开's substance): an inspection of a drawn project by its drawn
inspectors, its findings (category, severity, description, responsible enterprise and
person), photos and rectification orders (整改通知, with deadlines).

A finding is ``recorded`` by the inspector; once ``confirmed`` (after the enterprise could state
its case, 陈述申辩) it is a confirmed violation and goes into the credit records of the
responsible enterprise and person (``alerts.credit.add_record`` with source
``inspection:<inspection id>:<finding id>``, unique per subject, so confirming twice records
once) and their scores are recomputed, in the confirmation's transaction.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts import credit
from smartsite.db.registry import Ident, Uscc

FindingSeverity = Literal["minor", "major", "serious"]
# Credit points of a confirmed finding by severity (hub practice, as for alerts: no standard
# gives them; a regulator may state other points per finding).
FINDING_POINTS: dict[str, float] = {"minor": 2.0, "major": 5.0, "serious": 10.0}


class InspectionError(Exception):
    """An inspection change that cannot be made; the message says why."""


class NotFoundError(InspectionError):
    pass


class ConflictError(InspectionError):
    pass


class InvalidError(InspectionError):
    pass


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("needs a time zone")
    return v


class RectificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requirement: str = Field(min_length=1, max_length=2000, description="What must be done.")
    deadline: datetime = Field(description="By when (with a time zone).")

    _tz = field_validator("deadline")(_aware)


class FindingIn(BaseModel):
    """A finding as the inspector states it."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Credit category, e.g. safety."
    )
    severity: FindingSeverity
    description: str = Field(min_length=1, max_length=4000)
    responsible_uscc: Uscc | None = Field(None, description="The enterprise that answers.")
    responsible_person_id: Ident | None = Field(None, description="The person that answers.")
    points: float | None = Field(
        None, gt=0, le=100, description="Credit points once confirmed; None: by severity."
    )
    rectification: RectificationIn | None = Field(None, description="A rectification order.")

    @model_validator(mode="after")
    def _text(self) -> FindingIn:
        if not self.description.strip():
            raise ValueError("a description is needed")
        return self


class InspectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    draw_id: int = Field(ge=1, le=2**63 - 1)
    project_id: Ident
    inspected_on: date
    summary: str = Field("", max_length=4000)
    inspector_ids: list[Ident] | None = Field(
        None, description="Who inspected, among the drawn ones; None: all drawn."
    )


class RectificationOrder(BaseModel):
    id: int
    inspection_id: int
    project_id: str
    finding_id: int | None
    requirement: str
    deadline: datetime
    status: str = Field(description="open → reported (by the site) → done (verified).")
    overdue: bool
    issued_by: str
    issued_at: datetime
    reported_at: datetime | None = None
    reported_by: str | None = None
    report_note: str | None = None
    verified_at: datetime | None = None
    verified_by: str | None = None
    verify_note: str | None = None


class Finding(BaseModel):
    id: int
    category: str
    severity: FindingSeverity
    description: str
    responsible_uscc: str | None
    responsible_person_id: str | None
    points: float
    status: Literal["recorded", "confirmed"]
    recorded_by: str
    recorded_at: datetime
    confirmed_by: str | None
    confirmed_at: datetime | None
    confirmation_note: str
    credit_record_ids: list[int] = Field(description="The credit records it made.")


class Photo(BaseModel):
    id: int
    finding_id: int | None
    content_type: str
    size: int
    caption: str
    uploaded_by: str
    uploaded_at: datetime


class Inspection(BaseModel):
    id: int
    draw_id: int
    project_id: str
    project_name: str
    inspected_on: date
    summary: str
    inspectors: list[str] = Field(description="Inspector ids.")
    created_by: str
    created_at: datetime
    findings: list[Finding]
    rectification_orders: list[RectificationOrder]
    photos: list[Photo]


# --- writing -----------------------------------------------------------------------------------


def create_inspection(conn: psycopg.Connection, body: InspectionIn, *, by: str) -> int:
    drawn = [
        r[0]
        for r in conn.execute(
            "SELECT inspector_id FROM spot_check_assignments WHERE draw_id = %s"
            " AND project_id = %s ORDER BY rank",
            (body.draw_id, body.project_id),
        ).fetchall()
    ]
    if not drawn:
        raise NotFoundError(f"project {body.project_id} was not drawn in draw {body.draw_id}")
    inspectors = drawn if body.inspector_ids is None else list(dict.fromkeys(body.inspector_ids))
    strangers = sorted(set(inspectors) - set(drawn))
    if strangers:
        raise InvalidError(f"not drawn for this project: {', '.join(strangers)}")
    if not inspectors:
        raise InvalidError("at least one drawn inspector must inspect")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO inspections (draw_id, project_id, inspected_on, summary, created_by)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (draw_id, project_id) DO NOTHING"
            " RETURNING id",
            (body.draw_id, body.project_id, body.inspected_on, body.summary, by),
        ).fetchone()
        if row is None:
            raise ConflictError(
                f"project {body.project_id} of draw {body.draw_id} has its inspection already"
            )
        iid = int(row[0])
        for ins in inspectors:
            conn.execute(
                "INSERT INTO inspection_inspectors (inspection_id, inspector_id) VALUES (%s, %s)",
                (iid, ins),
            )
    return iid


def inspection_project(conn: psycopg.Connection, inspection_id: int) -> str:
    row = conn.execute("SELECT project_id FROM inspections WHERE id = %s", (inspection_id,))
    got = row.fetchone()
    if got is None:
        raise NotFoundError(f"no inspection {inspection_id}")
    return str(got[0])


def _project_subjects(conn: psycopg.Connection, project_id: str, f: FindingIn) -> None:
    """The responsible enterprise must work on the project; the person must exist."""
    if f.responsible_uscc is not None:
        on = conn.execute(
            "SELECT 1 FROM project_enterprises WHERE project_id = %s AND uscc = %s",
            (project_id, f.responsible_uscc),
        ).fetchone()
        if on is None:
            raise InvalidError(f"enterprise {f.responsible_uscc} is not on project {project_id}")
    if f.responsible_person_id is not None:
        known = conn.execute(
            "SELECT 1 FROM persons WHERE id = %s", (f.responsible_person_id,)
        ).fetchone()
        if known is None:
            raise InvalidError(f"no person {f.responsible_person_id}")


def add_finding(conn: psycopg.Connection, inspection_id: int, f: FindingIn, *, by: str) -> int:
    project_id = inspection_project(conn, inspection_id)
    _project_subjects(conn, project_id, f)
    points = f.points if f.points is not None else FINDING_POINTS[f.severity]
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO inspection_findings (inspection_id, category, severity, description,"
            " responsible_uscc, responsible_person_id, points, recorded_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                inspection_id,
                f.category,
                f.severity,
                f.description,
                f.responsible_uscc,
                f.responsible_person_id,
                points,
                by,
            ),
        ).fetchone()
        assert row is not None
        fid = int(row[0])
        if f.rectification is not None:
            conn.execute(
                "INSERT INTO rectification_orders (inspection_id, finding_id, requirement,"
                " deadline, issued_by) VALUES (%s, %s, %s, %s, %s)",
                (inspection_id, fid, f.rectification.requirement, f.rectification.deadline, by),
            )
    return fid


def add_photo(
    conn: psycopg.Connection,
    inspection_id: int,
    data: bytes,
    content_type: str,
    *,
    by: str,
    finding_id: int | None = None,
    caption: str = "",
) -> int:
    inspection_project(conn, inspection_id)
    if finding_id is not None:
        _finding(conn, inspection_id, finding_id)
    row = conn.execute(
        "INSERT INTO inspection_photos (inspection_id, finding_id, content_type, sha256, data,"
        " caption, uploaded_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            inspection_id,
            finding_id,
            content_type,
            hashlib.sha256(data).digest(),
            data,
            caption,
            by,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def photo_bytes(conn: psycopg.Connection, inspection_id: int, photo_id: int) -> tuple[bytes, str]:
    row = conn.execute(
        "SELECT data, content_type FROM inspection_photos WHERE id = %s AND inspection_id = %s",
        (photo_id, inspection_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no photo {photo_id} of inspection {inspection_id}")
    return bytes(row[0]), str(row[1])


def _finding(conn: psycopg.Connection, inspection_id: int, finding_id: int) -> dict:  # type: ignore[type-arg]
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT f.*, i.project_id FROM inspection_findings f"
            " JOIN inspections i ON i.id = f.inspection_id"
            " WHERE f.id = %s AND f.inspection_id = %s",
            (finding_id, inspection_id),
        ).fetchone()
    if row is None:
        raise NotFoundError(f"no finding {finding_id} of inspection {inspection_id}")
    return row


def credit_source(inspection_id: int, finding_id: int) -> str:
    return f"inspection:{inspection_id}:{finding_id}"


def confirm_finding(
    conn: psycopg.Connection,
    inspection_id: int,
    finding_id: int,
    *,
    by: str,
    note: str = "",
    now: datetime | None = None,
    policy: credit.Policy | None = None,
) -> list[int]:
    """Confirm the finding and record it as a violation of the responsible enterprise and
    person (once each), recomputing their credit; the ids of the records added (none when
    it was confirmed before)."""
    now = now or datetime.now(UTC)
    added: list[int] = []
    with conn.transaction():
        f = _finding(conn, inspection_id, finding_id)
        conn.execute(
            "UPDATE inspection_findings SET status = 'confirmed', confirmed_by = %s,"
            " confirmed_at = %s, confirmation_note = %s WHERE id = %s AND status = 'recorded'",
            (by, now, note, finding_id),
        )
        subjects = []
        if f["responsible_uscc"] is not None:
            subjects.append((f["responsible_uscc"].strip(), None))
        if f["responsible_person_id"] is not None:
            subjects.append((None, f["responsible_person_id"]))
        for uscc, person_id in subjects:
            rid = credit.add_record(
                conn,
                credit.RecordIn(
                    uscc=uscc,
                    person_id=person_id,
                    kind="violation",
                    category=f["category"],
                    severity=f["severity"],
                    points=float(f["points"]),
                    reason=(
                        f"spot-check finding on project {f['project_id']} "
                        f"(inspection {inspection_id}): {f['description'][:1500]}"
                    ),
                    source=credit_source(inspection_id, finding_id),
                    occurred_at=f["recorded_at"],  # when it was found, not confirmed
                    recorded_by=by,
                ),
            )
            if rid is not None:
                added.append(rid)
                credit.recompute(conn, uscc=uscc, person_id=person_id, now=now, policy=policy)
    return added


# --- reading -----------------------------------------------------------------------------------

_ORDER_COLS = (
    "o.id, o.inspection_id, i.project_id, o.finding_id, o.requirement, o.deadline, o.status,"
    " (o.status = 'open' AND o.deadline < now()) AS overdue, o.issued_by, o.issued_at,"
    " o.reported_at, o.reported_by, o.report_note, o.verified_at, o.verified_by, o.verify_note"
)


def get_inspection(conn: psycopg.Connection, inspection_id: int) -> Inspection:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT i.id, i.draw_id, i.project_id, p.name AS project_name, i.inspected_on,"
            " i.summary, i.created_by, i.created_at, coalesce((SELECT array_agg(inspector_id"
            " ORDER BY inspector_id) FROM inspection_inspectors WHERE inspection_id = i.id),"
            " '{}') AS inspectors FROM inspections i JOIN projects p ON p.id = i.project_id"
            " WHERE i.id = %s",
            (inspection_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no inspection {inspection_id}")
        findings = cur.execute(
            "SELECT f.id, f.category, f.severity, f.description, f.responsible_uscc,"
            " f.responsible_person_id, f.points::float8 AS points, f.status, f.recorded_by,"
            " f.recorded_at, f.confirmed_by, f.confirmed_at, f.confirmation_note,"
            " coalesce((SELECT array_agg(c.id ORDER BY c.id) FROM credit_records c"
            "  WHERE c.source = 'inspection:' || f.inspection_id || ':' || f.id), '{}')"
            "  AS credit_record_ids"
            " FROM inspection_findings f WHERE f.inspection_id = %s ORDER BY f.id",
            (inspection_id,),
        ).fetchall()
        orders = cur.execute(
            f"SELECT {_ORDER_COLS} FROM rectification_orders o"
            " JOIN inspections i ON i.id = o.inspection_id WHERE o.inspection_id = %s"
            " ORDER BY o.id",
            (inspection_id,),
        ).fetchall()
        photos = cur.execute(
            "SELECT id, finding_id, content_type, length(data) AS size, caption, uploaded_by,"
            " uploaded_at FROM inspection_photos WHERE inspection_id = %s ORDER BY id",
            (inspection_id,),
        ).fetchall()
    for f in findings:
        if f["responsible_uscc"] is not None:
            f["responsible_uscc"] = f["responsible_uscc"].strip()
    return Inspection(
        **row,
        findings=[Finding(**f) for f in findings],
        rectification_orders=[RectificationOrder(**o) for o in orders],
        photos=[Photo(**p) for p in photos],
    )


class InspectionItem(BaseModel):
    id: int
    draw_id: int
    project_id: str
    project_name: str
    inspected_on: date
    findings: int
    confirmed_findings: int
    open_orders: int


def list_inspections(
    conn: psycopg.Connection, pids: list[str] | None, *, project: str | None = None
) -> list[InspectionItem]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT i.id, i.draw_id, i.project_id, p.name AS project_name, i.inspected_on,"
            " (SELECT count(*) FROM inspection_findings f WHERE f.inspection_id = i.id)::int"
            "  AS findings,"
            " (SELECT count(*) FROM inspection_findings f WHERE f.inspection_id = i.id"
            "  AND f.status = 'confirmed')::int AS confirmed_findings,"
            " (SELECT count(*) FROM rectification_orders o WHERE o.inspection_id = i.id"
            "  AND o.status = 'open')::int AS open_orders"
            " FROM inspections i JOIN projects p ON p.id = i.project_id"
            " WHERE (%(pids)s::text[] IS NULL OR i.project_id = ANY(%(pids)s::text[]))"
            " AND (%(project)s::text IS NULL OR i.project_id = %(project)s)"
            " ORDER BY i.inspected_on DESC, i.id DESC",
            {"pids": pids, "project": project},
        ).fetchall()
    return [InspectionItem(**r) for r in rows]


def list_rectification_orders(
    conn: psycopg.Connection, pids: list[str] | None, *, open_only: bool = False
) -> list[RectificationOrder]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_ORDER_COLS} FROM rectification_orders o"
            " JOIN inspections i ON i.id = o.inspection_id"
            " WHERE (%(pids)s::text[] IS NULL OR i.project_id = ANY(%(pids)s::text[]))"
            " AND (NOT %(open)s OR o.status <> 'done') ORDER BY o.deadline, o.id",
            {"pids": pids, "open": open_only},
        ).fetchall()
    return [RectificationOrder(**r) for r in rows]


def order_project(conn: psycopg.Connection, order_id: int) -> str:
    row = conn.execute(
        "SELECT i.project_id FROM rectification_orders o"
        " JOIN inspections i ON i.id = o.inspection_id WHERE o.id = %s",
        (order_id,),
    ).fetchone()
    if row is None:
        raise NotFoundError("rectification order not found")
    return str(row[0])


def _order(conn: psycopg.Connection, order_id: int) -> RectificationOrder:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_ORDER_COLS} FROM rectification_orders o"
            " JOIN inspections i ON i.id = o.inspection_id WHERE o.id = %s",
            (order_id,),
        ).fetchone()
    if row is None:
        raise NotFoundError("rectification order not found")
    return RectificationOrder(**row)


def report_rectification(
    conn: psycopg.Connection, order_id: int, *, note: str, by: str
) -> RectificationOrder:
    """The site says an open order is done; a regulator verifies it next."""
    done = conn.execute(
        "UPDATE rectification_orders SET status = 'reported', reported_at = now(),"
        " reported_by = %s, report_note = %s WHERE id = %s AND status = 'open' RETURNING id",
        (by, note, order_id),
    ).fetchone()
    if done is None:
        status = _order(conn, order_id).status
        raise ConflictError(f"the order is {status}; only an open order can be reported done")
    return _order(conn, order_id)


def verify_rectification(
    conn: psycopg.Connection, order_id: int, *, accept: bool, note: str, by: str
) -> RectificationOrder:
    """A regulator accepts a reported rectification (done) or sends it back (open again)."""
    done = conn.execute(
        "UPDATE rectification_orders SET status = %s, verified_at = now(), verified_by = %s,"
        " verify_note = %s WHERE id = %s AND status = 'reported' RETURNING id",
        ("done" if accept else "open", by, note, order_id),
    ).fetchone()
    if done is None:
        status = _order(conn, order_id).status
        raise ConflictError(f"the order is {status}; only a reported order can be verified")
    return _order(conn, order_id)
