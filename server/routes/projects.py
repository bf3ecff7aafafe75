"""Projects in the caller's scope."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from psycopg.rows import class_row
from pydantic import BaseModel

from server.deps import Conn, Current
from server.errors import not_found
from server.pagination import Page, Paging
from server.principal import in_scope

router = APIRouter(prefix="/api/projects", tags=["projects"])


class ProjectOut(BaseModel):
    id: str
    name: str
    address: str
    district_code: str | None
    district_name: str | None
    latitude: float | None
    longitude: float | None
    status: str
    start_date: date | None
    planned_end_date: date | None
    created_at: datetime


_SELECT = (
    "SELECT p.id, p.name, p.address, p.district_code, d.name AS district_name, p.latitude,"
    " p.longitude, p.status, p.start_date, p.planned_end_date, p.created_at"
    " FROM projects p LEFT JOIN districts d ON d.code = p.district_code"
)


@router.get("")
def list_projects(
    p: Current,
    conn: Conn,
    page: Paging,
    district: Annotated[str | None, Query(max_length=12, description="District code.")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Name contains.")] = None,
) -> Page[ProjectOut]:
    where = (
        f" WHERE {in_scope('p.id')} AND (%(district)s::text IS NULL OR p.district_code ="
        " %(district)s) AND (%(q)s::text IS NULL OR p.name ILIKE '%%' || %(q)s || '%%')"
    )
    args = {"pids": p.pids, "district": district, "q": q}
    total = conn.execute("SELECT count(*) FROM projects p" + where, args).fetchone()
    with conn.cursor(row_factory=class_row(ProjectOut)) as cur:
        items = cur.execute(
            _SELECT + where + " ORDER BY p.id LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
    return Page(items=items, total=total[0] if total else 0, **page.model_dump())


@router.get("/{project_id}")
def get_project(project_id: str, p: Current, conn: Conn) -> ProjectOut:
    if not p.sees(project_id):
        raise not_found("project")
    with conn.cursor(row_factory=class_row(ProjectOut)) as cur:
        row = cur.execute(_SELECT + " WHERE p.id = %s", (project_id,)).fetchone()
    if row is None:
        raise not_found("project")
    return row
