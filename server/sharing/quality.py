"""The registries' data-quality report: projects under construction without a valid permit,
enterprises whose credit code has a wrong check character, persons whose resident ID number
has a wrong check digit (stored data can predate validation; the numbers are decrypted to be
checked and only ever reported masked), devices silent too long for their kind, projects
without a BIM model, and workers seen in a zone that requires a certificate they lack."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from cryptography.fernet import InvalidToken
from pydantic import BaseModel, Field

from server.principal import in_scope
from smartsite.identifiers import validate_id_number, validate_uscc
from smartsite.secrets import fernet

# Minutes without a message after which a device of a kind counts as silent: sensors that
# publish every few seconds go quiet fast, slow environmental sensors are given longer.
SILENT_MINUTES: dict[str, int] = {
    "camera": 10,
    "tower_crane": 5,
    "hoist": 5,
    "foundation_pit": 30,
    "high_formwork": 30,
    "dust": 15,
    "noise": 15,
    "gateway": 10,
}


class PermitProblem(BaseModel):
    project_id: str
    project_name: str
    problem: str = Field(description="missing, expired, suspended or revoked.")
    permit_number: str | None = Field(description="The latest permit, if any.")
    expires_on: date | None


class EnterpriseCodeProblem(BaseModel):
    uscc: str
    name: str
    problem: str


class PersonIdProblem(BaseModel):
    person_id: str
    name: str
    id_number_masked: str = Field(description="Never the number in clear.")
    problem: str


class SilentDevice(BaseModel):
    device_id: str
    project_id: str
    kind: str
    last_seen: datetime | None = Field(description="Null: never heard from.")
    silent_minutes: float | None = Field(description="Null: never heard from.")
    threshold_minutes: int


class ProjectWithoutBim(BaseModel):
    project_id: str
    project_name: str
    status: str


class MissingCertificate(BaseModel):
    project_id: str
    person_id: str
    name: str
    zone: str
    certificate_type: str
    problem: str = Field(description="missing or expired.")
    last_seen_in_zone: datetime


class QualitySummary(BaseModel):
    projects_without_valid_permit: int
    enterprises_with_invalid_codes: int
    persons_with_invalid_id_numbers: int
    silent_devices: int
    projects_without_bim: int
    workers_missing_certificates: int


class QualityReport(BaseModel):
    generated_at: datetime
    today: date
    summary: QualitySummary
    projects_without_valid_permit: list[PermitProblem]
    enterprises_with_invalid_codes: list[EnterpriseCodeProblem]
    persons_with_invalid_id_numbers: list[PersonIdProblem]
    silent_devices: list[SilentDevice]
    projects_without_bim: list[ProjectWithoutBim]
    workers_missing_certificates: list[MissingCertificate]


def _rows(conn: psycopg.Connection, sql: str, args: dict[str, Any]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, args).fetchall()


def permit_problems(
    conn: psycopg.Connection, pids: list[str] | None, today: date
) -> list[PermitProblem]:
    """Projects under construction with no permit that is valid today, by their latest."""
    rows = _rows(
        conn,
        "SELECT p.id, p.name, l.number, l.status, l.expires_on FROM projects p"
        " LEFT JOIN LATERAL (SELECT number, status, expires_on FROM permits pm"
        " WHERE pm.project_id = p.id ORDER BY issued_on DESC, number DESC LIMIT 1) l ON true"
        f" WHERE p.status = 'under_construction' AND {in_scope('p.id')}"
        " AND NOT EXISTS (SELECT 1 FROM permits v WHERE v.project_id = p.id"
        " AND v.status = 'valid' AND v.issued_on <= %(today)s"
        " AND (v.expires_on IS NULL OR v.expires_on >= %(today)s))"
        " ORDER BY p.id",
        {"pids": pids, "today": today},
    )
    out = []
    for pid, name, number, status, expires in rows:
        if number is None:
            problem = "missing"
        elif status in ("suspended", "revoked"):
            problem = status
        elif status == "valid" and expires is None:
            problem = "not yet valid"  # issued in the future
        else:
            problem = "expired"
        out.append(
            PermitProblem(
                project_id=pid,
                project_name=name,
                problem=problem,
                permit_number=number,
                expires_on=expires,
            )
        )
    return out


def enterprise_code_problems(
    conn: psycopg.Connection, pids: list[str] | None, own: str | None
) -> list[EnterpriseCodeProblem]:
    rows = _rows(
        conn,
        "SELECT btrim(e.uscc), e.name FROM enterprises e WHERE (%(pids)s::text[] IS NULL"
        " OR EXISTS (SELECT 1 FROM project_enterprises pe WHERE pe.uscc = e.uscc"
        f" AND {in_scope('pe.project_id')})) AND (%(own)s::text IS NULL OR e.uscc = %(own)s)"
        " ORDER BY e.uscc",
        {"pids": pids, "own": own},
    )
    out = []
    for uscc, name in rows:
        try:
            validate_uscc(uscc)
        except ValueError as exc:
            out.append(EnterpriseCodeProblem(uscc=uscc, name=name, problem=str(exc)))
    return out


def person_id_problems(
    conn: psycopg.Connection, pids: list[str] | None, own: str | None, key: bytes
) -> list[PersonIdProblem]:
    rows = _rows(
        conn,
        "SELECT pe.id, pe.name, btrim(pe.id_number_masked), pe.id_number_encrypted"
        " FROM persons pe WHERE (%(pids)s::text[] IS NULL OR EXISTS (SELECT 1 FROM"
        f" project_workers pw WHERE pw.person_id = pe.id AND {in_scope('pw.project_id')}))"
        " AND (%(own)s::text IS NULL OR pe.employer_uscc = %(own)s) ORDER BY pe.id",
        {"pids": pids, "own": own},
    )
    f = fernet(key, "id_number")
    out = []
    for pid, name, masked, encrypted in rows:
        try:
            number = f.decrypt(bytes(encrypted)).decode()
        except InvalidToken:
            problem = "the stored number cannot be decrypted with this hub's key"
        else:
            try:
                validate_id_number(number)  # its message never repeats the number
                continue
            except ValueError as exc:
                problem = str(exc)
            finally:
                del number
        out.append(
            PersonIdProblem(person_id=pid, name=name, id_number_masked=masked, problem=problem)
        )
    return out


def silent_devices(
    conn: psycopg.Connection, pids: list[str] | None, now: datetime, minutes: dict[str, int]
) -> list[SilentDevice]:
    rows = _rows(
        conn,
        "SELECT id, project_id, kind, last_seen FROM devices"
        f" WHERE active AND {in_scope('project_id')} ORDER BY project_id, kind, id",
        {"pids": pids},
    )
    out = []
    for device, project, kind, last_seen in rows:
        limit = minutes.get(kind, 15)
        if last_seen is not None and now - last_seen <= timedelta(minutes=limit):
            continue
        silent = None if last_seen is None else round((now - last_seen).total_seconds() / 60, 1)
        out.append(
            SilentDevice(
                device_id=device,
                project_id=project,
                kind=kind,
                last_seen=last_seen,
                silent_minutes=silent,
                threshold_minutes=limit,
            )
        )
    return out


def projects_without_bim(
    conn: psycopg.Connection, pids: list[str] | None
) -> list[ProjectWithoutBim]:
    rows = _rows(
        conn,
        "SELECT p.id, p.name, p.status FROM projects p"
        f" WHERE p.status IN ('planned', 'under_construction') AND {in_scope('p.id')}"
        " AND NOT EXISTS (SELECT 1 FROM bim_models m WHERE m.project_id = p.id) ORDER BY p.id",
        {"pids": pids},
    )
    return [ProjectWithoutBim(project_id=a, project_name=b, status=c) for a, b, c in rows]


def missing_certificates(
    conn: psycopg.Connection, pids: list[str] | None, today: date, since: datetime
) -> list[MissingCertificate]:
    """Workers recognised (face) in a zone that requires a certificate since ``since``,
    without a certificate of that type valid today."""
    rows = _rows(
        conn,
        "WITH seen AS (SELECT ev.project_id, ev.attributes->'face'->>'worker_id' AS person_id,"
        " z.zone, max(ev.time) AS last_seen FROM events ev CROSS JOIN LATERAL unnest(ev.zones)"
        " AS z(zone) WHERE ev.time >= %(since)s AND ev.attributes->'face'->>'worker_id'"
        f" IS NOT NULL AND {in_scope('ev.project_id')} GROUP BY 1, 2, 3)"
        " SELECT s.project_id, s.person_id, pe.name, s.zone, r.certificate_type, s.last_seen,"
        " EXISTS (SELECT 1 FROM certificates c WHERE c.person_id = s.person_id"
        " AND c.type = r.certificate_type) AS held FROM seen s"
        " JOIN zone_certificate_requirements r ON r.project_id = s.project_id"
        " AND r.zone = s.zone JOIN persons pe ON pe.id = s.person_id"
        " WHERE NOT EXISTS (SELECT 1 FROM certificates c WHERE c.person_id = s.person_id"
        " AND c.type = r.certificate_type AND (c.expires_on IS NULL OR c.expires_on >= %(today)s))"
        " ORDER BY s.project_id, s.person_id, s.zone, r.certificate_type",
        {"pids": pids, "since": since, "today": today},
    )
    return [
        MissingCertificate(
            project_id=project,
            person_id=person,
            name=name,
            zone=zone,
            certificate_type=ctype,
            problem="expired" if held else "missing",
            last_seen_in_zone=last,
        )
        for project, person, name, zone, ctype, last, held in rows
    ]


def quality_report(
    conn: psycopg.Connection,
    *,
    pids: list[str] | None,
    own_enterprise: str | None,
    key: bytes,
    now: datetime,
    today: date,
    silent_minutes: int | None = None,
    zone_days: int = 30,
) -> QualityReport:
    """The report over the projects ``pids`` (None: every project). ``silent_minutes``
    replaces the per-kind thresholds of ``SILENT_MINUTES`` for every kind."""
    minutes = (
        {k: silent_minutes for k in SILENT_MINUTES} if silent_minutes else dict(SILENT_MINUTES)
    )
    permits = permit_problems(conn, pids, today)
    codes = enterprise_code_problems(conn, pids, own_enterprise)
    ids = person_id_problems(conn, pids, own_enterprise, key)
    silent = silent_devices(conn, pids, now, minutes)
    bim = projects_without_bim(conn, pids)
    certs = missing_certificates(conn, pids, today, now - timedelta(days=zone_days))
    return QualityReport(
        generated_at=now,
        today=today,
        summary=QualitySummary(
            projects_without_valid_permit=len(permits),
            enterprises_with_invalid_codes=len(codes),
            persons_with_invalid_id_numbers=len(ids),
            silent_devices=len(silent),
            projects_without_bim=len(bim),
            workers_missing_certificates=len(certs),
        ),
        projects_without_valid_permit=permits,
        enterprises_with_invalid_codes=codes,
        persons_with_invalid_id_numbers=ids,
        silent_devices=silent,
        projects_without_bim=bim,
        workers_missing_certificates=certs,
    )
