"""Random spot checks (双随机一公开): the inspector pool, risk-weighted draws with their
verification and publication, and the inspections that follow (findings, photos,
rectification orders, confirmation into credit).

Who may do what:

* regulators and admins keep the inspector pool, draw, publish, and record inspections; a
  district regulator draws only in its district and records only on its district's projects;
* a draw is seen in full (with its snapshot) by the admins and the regulators whose scope
  holds its district; once published its result (project, inspectors by name, date, seed and
  snapshot hash; no personal identity data) is readable by every logged-in principal; an
  unpublished draw of another scope is 404, as if absent;
* inspections and rectification orders are read in the project scope (the officers of the
  project see its inspections and orders); another scope's is 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from inspections import draw as dr
from inspections import records as rec
from server.deps import Conn, Current, SettingsDep, require
from server.errors import ApiError, forbidden, not_found
from server.pagination import Page, Paging
from server.principal import Principal
from server.uploads import read_photo, refuse_keys_photos
from smartsite.db.registry import Ident, Uscc

router = APIRouter(tags=["spot checks"])

MANAGER_ROLES = ("regulator", "admin")
Manager = Annotated[Principal, Depends(require(*MANAGER_ROLES))]
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


# --- models ------------------------------------------------------------------------------------


class InspectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Ident
    name: str = Field(min_length=1, max_length=100)
    badge_no: str | None = Field(None, max_length=40, description="执法证号.")
    district_code: str | None = Field(None, max_length=12, description="None: city level.")
    user_id: int | None = Field(None, ge=1, description="The user account, if any.")


class AffiliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uscc: Uscc = Field(description="The enterprise (统一社会信用代码).")
    started_on: date | None = None
    ended_on: date | None = Field(None, description="None: current.")
    note: str = Field("", max_length=500)


class Affiliation(BaseModel):
    uscc: str
    started_on: date | None
    ended_on: date | None
    note: str


class Inspector(BaseModel):
    id: str
    name: str
    badge_no: str | None
    district_code: str | None
    user_id: int | None
    active: bool
    affiliations: list[Affiliation]


class DrawIn(dr.DrawParams):
    """A draw's parameters. The seed is always the server's (random, recorded and published):
    a drawer who could choose it could try seeds until the result suited them."""

    title: str = Field(min_length=1, max_length=200, description="E.g. 2026 Q2 safety round.")


class PublicInspector(BaseModel):
    id: str
    name: str
    badge_no: str | None


class DrawResult(BaseModel):
    rank: int
    project_id: str
    project_name: str
    district_code: str | None
    inspectors: list[PublicInspector]


class DrawItem(BaseModel):
    id: int
    title: str
    district_code: str | None
    seed: int
    snapshot_sha256: str
    drawn_by: str
    drawn_at: datetime
    published_at: datetime | None
    projects: int = Field(description="Projects drawn.")


class DrawOut(DrawItem):
    params: dr.DrawParams
    results: list[DrawResult]
    snapshot: dict[str, Any] | None = Field(
        description="Every input of the draw; only for those who manage it."
    )


class PublishedResult(BaseModel):
    """One line of the public list (一公开)."""

    draw_id: int
    title: str
    drawn_at: datetime
    published_at: datetime
    project_id: str
    project_name: str
    inspectors: list[PublicInspector]
    inspected_on: date | None = Field(description="None: not inspected yet.")


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000)


class Confirmed(BaseModel):
    finding: rec.Finding
    credit_records_added: list[int] = Field(description="Empty when confirmed before.")


# --- helpers -----------------------------------------------------------------------------------


def _manages(p: Principal, district: str | None) -> bool:
    """Admins and the regulators whose scope holds the district manage its draws."""
    if p.role == "admin":
        return True
    return p.role == "regulator" and (p.district is None or p.district == district)


def _draw_row(conn: psycopg.Connection, p: Principal, draw_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT district_code, published_at FROM spot_check_draws WHERE id = %s", (draw_id,)
    ).fetchone()
    if row is None or not (_manages(p, row[0]) or row[1] is not None):
        raise not_found("draw")
    return {"district_code": row[0], "published_at": row[1], "manages": _manages(p, row[0])}


def _public_inspectors(conn: psycopg.Connection, ids: list[str]) -> list[PublicInspector]:
    rows = conn.execute(
        "SELECT id, name, badge_no FROM inspectors WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    by_id = {r[0]: PublicInspector(id=r[0], name=r[1], badge_no=r[2]) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def _draw_out(conn: psycopg.Connection, draw_id: int, manages: bool) -> DrawOut:
    d = dr.get_draw(conn, draw_id)
    names = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT id, name, district_code FROM projects WHERE id = ANY(%s)",
            ([x.project_id for x in d.results],),
        ).fetchall()
    }
    results = [
        DrawResult(
            rank=rank,
            project_id=x.project_id,
            project_name=names[x.project_id][0],
            district_code=names[x.project_id][1],
            inspectors=_public_inspectors(conn, x.inspectors),
        )
        for rank, x in enumerate(d.results, 1)
    ]
    return DrawOut(
        id=d.id,
        title=d.title,
        district_code=d.district_code,
        seed=d.seed,
        snapshot_sha256=d.snapshot_sha256,
        drawn_by=d.drawn_by,
        drawn_at=d.drawn_at,
        published_at=d.published_at,
        projects=len(d.results),
        params=d.params,
        results=results,
        snapshot=d.snapshot if manages else None,
    )


def _inspection_in_scope(conn: psycopg.Connection, p: Principal, inspection_id: int) -> str:
    try:
        project_id = rec.inspection_project(conn, inspection_id)
    except rec.NotFoundError:
        raise not_found("inspection") from None
    if not p.sees(project_id):
        raise not_found("inspection")
    return project_id


@contextmanager
def _record_errors() -> Iterator[None]:
    try:
        yield
    except rec.NotFoundError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except rec.ConflictError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except rec.InvalidError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


def _inspector(conn: psycopg.Connection, inspector_id: str) -> Inspector:
    row = conn.execute(
        "SELECT id, name, badge_no, district_code, user_id, active FROM inspectors WHERE id = %s",
        (inspector_id,),
    ).fetchone()
    if row is None:
        raise not_found("inspector")
    ties = conn.execute(
        "SELECT uscc, started_on, ended_on, note FROM inspector_affiliations"
        " WHERE inspector_id = %s ORDER BY started_on NULLS FIRST, id",
        (inspector_id,),
    ).fetchall()
    return Inspector(
        id=row[0],
        name=row[1],
        badge_no=row[2],
        district_code=row[3],
        user_id=row[4],
        active=row[5],
        affiliations=[
            Affiliation(uscc=u.strip(), started_on=s, ended_on=e, note=n) for u, s, e, n in ties
        ],
    )


# --- inspectors --------------------------------------------------------------------------------


@router.post("/api/inspectors", status_code=201)
def create_inspector(body: InspectorIn, p: Manager, conn: Conn) -> Inspector:
    """Add an inspector to the pool (a district regulator: of its own district)."""
    if p.role == "regulator" and p.district is not None and body.district_code != p.district:
        raise forbidden(f"a regulator of district {p.district} adds inspectors of it only")
    conn.execute(
        "INSERT INTO inspectors (id, name, badge_no, district_code, user_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        (body.id, body.name, body.badge_no, body.district_code, body.user_id),
    )
    return _inspector(conn, body.id)


@router.get("/api/inspectors")
def list_inspectors(p: Manager, conn: Conn) -> list[Inspector]:
    """The inspector pool a caller manages (a district regulator: its district's and the
    city's inspectors), with affiliations (conflicts of interest)."""
    district = p.district if p.role == "regulator" else None
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM inspectors WHERE %(d)s::text IS NULL OR district_code IS NULL"
            " OR district_code = %(d)s ORDER BY id",
            {"d": district},
        ).fetchall()
    ]
    return [_inspector(conn, i) for i in ids]


@router.post("/api/inspectors/{inspector_id}/affiliations", status_code=201)
def add_inspector_affiliation(
    inspector_id: str, body: AffiliationIn, p: Manager, conn: Conn
) -> Inspector:
    """Record a current or former tie to an enterprise (excluded from its projects)."""
    ins = _inspector(conn, inspector_id)
    if not _manages(p, ins.district_code) and ins.district_code is not None:
        raise not_found("inspector")
    if body.ended_on and body.started_on and body.ended_on < body.started_on:
        raise ApiError(422, "invalid", "the affiliation must end on or after it starts")
    conn.execute(
        "INSERT INTO inspector_affiliations (inspector_id, uscc, started_on, ended_on, note)"
        " VALUES (%s, %s, %s, %s, %s)",
        (inspector_id, body.uscc, body.started_on, body.ended_on, body.note),
    )
    return _inspector(conn, inspector_id)


# --- draws -------------------------------------------------------------------------------------


@router.post("/api/spot-checks/draws", status_code=201)
def create_spot_check_draw(body: DrawIn, p: Manager, conn: Conn, settings: SettingsDep) -> DrawOut:
    """Draw projects (weighted by risk) and inspectors (no conflicts of interest) at random.
    The seed and every input are recorded; ``GET …/verify`` recomputes the draw."""
    params = dr.DrawParams.model_validate(body.model_dump(exclude={"title"}))
    if p.role == "regulator" and p.district is not None:
        if params.district not in (None, p.district):
            raise forbidden(f"a regulator of district {p.district} draws in it only")
        params = params.model_copy(update={"district": p.district})
    today = datetime.now(ZoneInfo(settings.alerts_timezone)).date()
    try:
        draw_id = dr.create_draw(
            conn, params, title=body.title, by=p.name, as_of=today, scope=p.pids
        )
    except dr.DrawError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    return _draw_out(conn, draw_id, manages=True)


@router.get("/api/spot-checks/draws")
def list_spot_check_draws(
    p: Current,
    conn: Conn,
    page: Paging,
    published: Annotated[bool | None, Query(description="Only (un)published draws.")] = None,
) -> Page[DrawItem]:
    """The draws the caller manages and every published one, newest first."""
    manage_all = p.role == "admin" or (p.role == "regulator" and p.district is None)
    where = (
        " WHERE (d.published_at IS NOT NULL OR %(all)s"
        " OR (%(regulator)s AND d.district_code = %(district)s))"
        " AND (%(published)s::boolean IS NULL OR (d.published_at IS NOT NULL) = %(published)s)"
    )
    args = {
        "all": manage_all,
        "regulator": p.role == "regulator",
        "district": p.district,
        "published": published,
    }
    total = conn.execute("SELECT count(*) FROM spot_check_draws d" + where, args).fetchone()
    rows = conn.execute(
        "SELECT d.id, d.title, d.district_code, d.seed, d.snapshot_sha256, d.drawn_by,"
        " d.drawn_at, d.published_at,"
        " (SELECT count(*) FROM spot_check_results r WHERE r.draw_id = d.id)::int"
        " FROM spot_check_draws d" + where + " ORDER BY d.drawn_at DESC, d.id DESC"
        " LIMIT %(limit)s OFFSET %(offset)s",
        {**args, "limit": page.limit, "offset": page.offset},
    ).fetchall()
    keys = list(DrawItem.model_fields)
    items = [DrawItem(**dict(zip(keys, r, strict=True))) for r in rows]
    return Page(items=items, total=total[0] if total else 0, **page.model_dump())


@router.get("/api/spot-checks/published")
def list_published_spot_check_results(p: Current, conn: Conn) -> list[PublishedResult]:
    """The public list (一公开): every published draw's projects and inspectors, newest first."""
    rows = conn.execute(
        "SELECT d.id, d.title, d.drawn_at, d.published_at, r.project_id, pr.name,"
        " coalesce((SELECT array_agg(a.inspector_id ORDER BY a.rank)"
        "  FROM spot_check_assignments a WHERE a.draw_id = d.id"
        "  AND a.project_id = r.project_id), '{}'),"
        " (SELECT i.inspected_on FROM inspections i WHERE i.draw_id = d.id"
        "  AND i.project_id = r.project_id)"
        " FROM spot_check_draws d JOIN spot_check_results r ON r.draw_id = d.id"
        " JOIN projects pr ON pr.id = r.project_id WHERE d.published_at IS NOT NULL"
        " ORDER BY d.published_at DESC, d.id DESC, r.rank"
    ).fetchall()
    return [
        PublishedResult(
            draw_id=r[0],
            title=r[1],
            drawn_at=r[2],
            published_at=r[3],
            project_id=r[4],
            project_name=r[5],
            inspectors=_public_inspectors(conn, list(r[6])),
            inspected_on=r[7],
        )
        for r in rows
    ]


@router.get("/api/spot-checks/draws/{draw_id}")
def get_spot_check_draw(draw_id: Id, p: Current, conn: Conn) -> DrawOut:
    """A draw: in full for those who manage it, its public result once published."""
    d = _draw_row(conn, p, draw_id)
    return _draw_out(conn, draw_id, manages=d["manages"])


@router.post("/api/spot-checks/draws/{draw_id}/publish")
def publish_spot_check_draw(draw_id: Id, p: Manager, conn: Conn) -> DrawOut:
    """Publish the result (一公开); publishing again changes nothing."""
    d = _draw_row(conn, p, draw_id)
    if not d["manages"]:
        raise not_found("draw")
    dr.publish(conn, draw_id, by=p.name)
    return _draw_out(conn, draw_id, manages=True)


@router.get("/api/spot-checks/draws/{draw_id}/verify")
def verify_spot_check_draw(draw_id: Id, p: Current, conn: Conn) -> dr.Verification:
    """Recompute the draw from its stored snapshot and seed and compare: hash, weights,
    result. Anyone who can read the draw can check it."""
    _draw_row(conn, p, draw_id)
    return dr.verify(conn, draw_id)


# --- inspections -------------------------------------------------------------------------------


@router.post("/api/inspections", status_code=201)
def create_inspection(body: rec.InspectionIn, p: Manager, conn: Conn) -> rec.Inspection:
    """Record the inspection of a drawn project by (some of) its drawn inspectors."""
    if not p.sees(body.project_id):
        raise not_found("project")
    with _record_errors():
        iid = rec.create_inspection(conn, body, by=p.name)
        return rec.get_inspection(conn, iid)


@router.get("/api/inspections")
def list_inspections(
    p: Current,
    conn: Conn,
    project: Annotated[str | None, Query(max_length=64, description="Project id.")] = None,
) -> list[rec.InspectionItem]:
    """Inspections of the projects in scope, newest first."""
    return rec.list_inspections(conn, p.pids, project=project)


@router.get("/api/inspections/{inspection_id}")
def get_inspection(inspection_id: Id, p: Current, conn: Conn) -> rec.Inspection:
    """An inspection with its findings, rectification orders and photos."""
    _inspection_in_scope(conn, p, inspection_id)
    with _record_errors():
        return rec.get_inspection(conn, inspection_id)


@router.post("/api/inspections/{inspection_id}/findings", status_code=201)
def add_inspection_finding(
    inspection_id: Id, body: rec.FindingIn, p: Manager, conn: Conn
) -> rec.Inspection:
    """Record a finding, optionally with a rectification order (整改通知) and its deadline."""
    _inspection_in_scope(conn, p, inspection_id)
    with _record_errors():
        rec.add_finding(conn, inspection_id, body, by=p.name)
        return rec.get_inspection(conn, inspection_id)


@router.post("/api/inspections/{inspection_id}/photos", status_code=201)
def upload_inspection_photo(
    inspection_id: Id,
    p: Manager,
    conn: Conn,
    settings: SettingsDep,
    photo: Annotated[UploadFile, File(description="JPEG/PNG/WebP, judged by its content.")],
    caption: Annotated[str, Form(max_length=500)] = "",
    finding_id: Annotated[int | None, Form(ge=1, le=2**63 - 1)] = None,
) -> rec.Photo:
    """Add a photo to the inspection (optionally of one finding)."""
    _inspection_in_scope(conn, p, inspection_id)
    data, ctype = read_photo(photo, settings.upload_max_bytes)
    with _record_errors():
        pid = rec.add_photo(
            conn, inspection_id, data, ctype, by=p.name, finding_id=finding_id, caption=caption
        )
        return next(x for x in rec.get_inspection(conn, inspection_id).photos if x.id == pid)


@router.get(
    "/api/inspections/{inspection_id}/photos/{photo_id}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def get_inspection_photo(inspection_id: Id, photo_id: Id, p: Current, conn: Conn) -> Response:
    """The image bytes of one of the inspection's photos (never to API keys)."""
    refuse_keys_photos(p)
    _inspection_in_scope(conn, p, inspection_id)
    with _record_errors():
        data, ctype = rec.photo_bytes(conn, inspection_id, photo_id)
    return Response(
        data,
        media_type=ctype,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/api/inspections/{inspection_id}/findings/{finding_id}/confirm")
def confirm_inspection_finding(
    inspection_id: Id, finding_id: Id, body: ConfirmIn, p: Manager, conn: Conn
) -> Confirmed:
    """Confirm a finding: it goes into the credit records of the responsible enterprise and
    person, once (confirming again adds nothing)."""
    _inspection_in_scope(conn, p, inspection_id)
    with _record_errors():
        added = rec.confirm_finding(conn, inspection_id, finding_id, by=p.name, note=body.note)
        found = rec.get_inspection(conn, inspection_id).findings
    return Confirmed(
        finding=next(f for f in found if f.id == finding_id), credit_records_added=added
    )


@router.get("/api/rectification-orders")
def list_rectification_orders(
    p: Current,
    conn: Conn,
    open_only: Annotated[bool, Query(description="Only orders not done.")] = False,
) -> list[rec.RectificationOrder]:
    """Rectification orders (整改通知) of spot checks on the projects in scope, by deadline."""
    return rec.list_rectification_orders(conn, p.pids, open_only=open_only)


class OrderReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, description="What was done.")


class OrderVerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accept: bool = Field(description="True: done; false: back to open.")
    note: str = Field("", max_length=2000, description="Why, especially when sent back.")


def _order_in_scope(conn: psycopg.Connection, p: Principal, order_id: int) -> None:
    with _record_errors():
        project = rec.order_project(conn, order_id)
    if not p.sees(project):
        raise not_found("rectification order")


@router.post("/api/rectification-orders/{order_id}/report")
def report_rectification_done(
    order_id: Id,
    body: OrderReportIn,
    p: Annotated[Principal, Depends(require("officer", "admin"))],
    conn: Conn,
) -> rec.RectificationOrder:
    """The project's officer reports an open rectification order done."""
    _order_in_scope(conn, p, order_id)
    with _record_errors():
        return rec.report_rectification(conn, order_id, note=body.note, by=p.name)


@router.post("/api/rectification-orders/{order_id}/verify")
def verify_rectification_order(
    order_id: Id, body: OrderVerifyIn, p: Manager, conn: Conn
) -> rec.RectificationOrder:
    """A regulator accepts the reported rectification, or sends it back to open."""
    _order_in_scope(conn, p, order_id)
    with _record_errors():
        return rec.verify_rectification(
            conn, order_id, accept=body.accept, note=body.note, by=p.name
        )
