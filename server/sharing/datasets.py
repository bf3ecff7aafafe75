"""The shareable datasets as queries: one SELECT per dataset, scoped to the caller's projects
(``pids``; an enterprise user also to their enterprise, ``own``), with the column that a date
range (``since`` inclusive, ``until`` exclusive) applies to. The sharing endpoints page them,
the exports stream them; both pass every row through ``grants.RowShaper``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from server.principal import Principal, in_scope


@dataclass(frozen=True)
class Dataset:
    name: str
    select: str  # SELECT … FROM … (aliases as in the WHERE below)
    scope: str  # SQL condition on %(pids)s and %(own)s
    date_column: str
    date_kind: Literal["date", "timestamptz"]
    order: str
    project_filter: str  # SQL condition on %(project)s: the rows of one project

    @property
    def table(self) -> str:
        return self.select.rsplit(" FROM ", 1)[1]


_OWN_PERSON = "(%(own)s::text IS NULL OR pe.employer_uscc = %(own)s)"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "projects",
            "SELECT p.id, p.name, p.address, p.district_code, p.status, p.latitude, p.longitude,"
            " p.start_date, p.planned_end_date, p.completed_date, p.created_at FROM projects p",
            in_scope("p.id"),
            "p.created_at",
            "timestamptz",
            "p.id",
            "p.id = %(project)s",
        ),
        Dataset(
            "permits",
            "SELECT pm.number, pm.project_id, pm.issued_on, pm.expires_on, pm.status, pm.issuer"
            " FROM permits pm",
            in_scope("pm.project_id"),
            "pm.issued_on",
            "date",
            "pm.issued_on, pm.number",
            "pm.project_id = %(project)s",
        ),
        Dataset(
            "enterprises",
            "SELECT btrim(e.uscc) AS uscc, e.name, e.kind, e.credit_score::float8 AS credit_score,"
            " e.credit_grade, e.blacklisted, coalesce((SELECT array_agg(DISTINCT pe.project_id"
            " ORDER BY pe.project_id) FROM project_enterprises pe WHERE pe.uscc = e.uscc"
            f" AND {in_scope('pe.project_id')}), '{{}}') AS projects FROM enterprises e",
            "(%(pids)s::text[] IS NULL OR EXISTS (SELECT 1 FROM project_enterprises pe"
            f" WHERE pe.uscc = e.uscc AND {in_scope('pe.project_id')}))"
            " AND (%(own)s::text IS NULL OR e.uscc = %(own)s)",
            "e.created_at",
            "timestamptz",
            "e.name, e.uscc",
            "EXISTS (SELECT 1 FROM project_enterprises px WHERE px.uscc = e.uscc"
            " AND px.project_id = %(project)s)",
        ),
        Dataset(
            "workers",
            "SELECT pw.person_id, pe.name, pe.id_number_masked AS _id_number_masked,"
            " pe.id_number_encrypted AS _id_number_encrypted, btrim(pe.employer_uscc)"
            " AS employer_uscc, pe.trade, pe.status, pw.project_id, pw.role, pw.joined_on,"
            " pw.left_on, coalesce((SELECT jsonb_agg(jsonb_build_object('type', c.type,"
            " 'number', c.number, 'issued_on', c.issued_on, 'expires_on', c.expires_on)"
            " ORDER BY c.type, c.number) FROM certificates c WHERE c.person_id = pe.id),"
            " '[]') AS certificates"
            " FROM project_workers pw JOIN persons pe ON pe.id = pw.person_id",
            f"{in_scope('pw.project_id')} AND {_OWN_PERSON}",
            "pw.joined_on",
            "date",
            "pw.project_id, pe.name, pw.person_id",
            "pw.project_id = %(project)s",
        ),
        Dataset(
            "attendance",
            "SELECT a.time, a.project_id, a.device_id, a.worker_id AS person_id, a.direction,"
            " a.similarity::float8 AS similarity FROM attendance a",
            in_scope("a.project_id"),
            "a.time",
            "timestamptz",
            "a.time, a.worker_id",
            "a.project_id = %(project)s",
        ),
        Dataset(
            "alerts",
            "SELECT al.id::text AS id, al.created_at, al.project_id, al.device_id, al.source,"
            " al.rule, al.severity, al.status, al.zone, al.detail, al.unpermitted_work"
            " FROM alerts al",
            in_scope("al.project_id"),
            "al.created_at",
            "timestamptz",
            "al.created_at, al.id",
            "al.project_id = %(project)s",
        ),
        Dataset(
            "credit",
            "SELECT cr.id, CASE WHEN cr.uscc IS NULL THEN 'person' ELSE 'enterprise' END"
            " AS subject, btrim(cr.uscc) AS uscc, cr.person_id, cr.kind, cr.category,"
            " cr.severity, cr.points::float8 AS points, cr.reason, cr.source, cr.occurred_at,"
            " cr.recorded_at FROM credit_records cr",
            "(%(pids)s::text[] IS NULL"
            " OR EXISTS (SELECT 1 FROM project_enterprises pe WHERE pe.uscc = cr.uscc"
            f" AND {in_scope('pe.project_id')})"
            " OR EXISTS (SELECT 1 FROM project_workers pw WHERE pw.person_id = cr.person_id"
            f" AND {in_scope('pw.project_id')}))"
            " AND (%(own)s::text IS NULL OR cr.uscc = %(own)s OR EXISTS (SELECT 1 FROM persons"
            " pe WHERE pe.id = cr.person_id AND pe.employer_uscc = %(own)s))",
            "cr.occurred_at",
            "timestamptz",
            "cr.occurred_at, cr.id",
            "(EXISTS (SELECT 1 FROM project_enterprises px WHERE px.uscc = cr.uscc"
            " AND px.project_id = %(project)s) OR EXISTS (SELECT 1 FROM project_workers px"
            " WHERE px.person_id = cr.person_id AND px.project_id = %(project)s))",
        ),
        Dataset(
            "telemetry",
            "SELECT t.time, t.project_id, t.device_id, t.metric, t.value, t.unit FROM telemetry t",
            in_scope("t.project_id"),
            "t.time",
            "timestamptz",
            "t.time, t.device_id, t.metric",
            "t.project_id = %(project)s",
        ),
        Dataset(
            "devices",
            "SELECT dv.id, dv.project_id, dv.kind, dv.name, dv.active, dv.last_seen"
            " FROM devices dv",
            in_scope("dv.project_id"),
            "dv.created_at",
            "timestamptz",
            "dv.project_id, dv.id",
            "dv.project_id = %(project)s",
        ),
    )
}


def own_enterprise(p: Principal) -> str | None:
    """An enterprise user's own credit code (they see only their enterprise); None: any."""
    if p.role != "enterprise":
        return None
    return p.enterprise_uscc or ""


def _bound(value: datetime | None, kind: str, tz: ZoneInfo) -> datetime | date | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(tz).date() if kind == "date" else value


def _where(
    ds: Dataset,
    p: Principal,
    since: datetime | None,
    until: datetime | None,
    tz: ZoneInfo,
    project: str | None,
) -> tuple[str, dict[str, Any]]:
    cast = "date" if ds.date_kind == "date" else "timestamptz"
    where = (
        f" WHERE {ds.scope}"
        f" AND (%(since)s::{cast} IS NULL OR {ds.date_column} >= %(since)s::{cast})"
        f" AND (%(until)s::{cast} IS NULL OR {ds.date_column} < %(until)s::{cast})"
    )
    args: dict[str, Any] = {
        "pids": p.pids,
        "own": own_enterprise(p),
        "since": _bound(since, ds.date_kind, tz),
        "until": _bound(until, ds.date_kind, tz),
    }
    if project is not None:
        where += f" AND {ds.project_filter}"
        args["project"] = project
    return where, args


def count_rows(
    conn: psycopg.Connection,
    ds: Dataset,
    p: Principal,
    *,
    since: datetime | None,
    until: datetime | None,
    tz: ZoneInfo,
    project: str | None = None,
) -> int:
    where, args = _where(ds, p, since, until, tz, project)
    row = conn.execute(f"SELECT count(*) FROM {ds.table}{where}", args).fetchone()
    return int(row[0]) if row else 0


def page_rows(
    conn: psycopg.Connection,
    ds: Dataset,
    p: Principal,
    *,
    since: datetime | None,
    until: datetime | None,
    tz: ZoneInfo,
    limit: int,
    offset: int,
    project: str | None = None,
) -> list[dict[str, Any]]:
    where, args = _where(ds, p, since, until, tz, project)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"{ds.select}{where} ORDER BY {ds.order} LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": limit, "offset": offset},
        ).fetchall()


def stream_rows(
    conn: psycopg.Connection,
    ds: Dataset,
    p: Principal,
    *,
    since: datetime | None,
    until: datetime | None,
    tz: ZoneInfo,
    batch: int = 5000,
) -> Iterator[dict[str, Any]]:
    """Every row in order, through a server-side cursor (an export of any size stays small
    in memory). ``conn`` must not be in autocommit mode for the duration, or is put out of it."""
    where, args = _where(ds, p, since, until, tz, None)
    with conn.transaction(), conn.cursor(name=f"export_{ds.name}", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(f"{ds.select}{where} ORDER BY {ds.order}", args)
        yield from cur
