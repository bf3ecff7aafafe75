"""Alert rules at run time (issue 5): read, put and delete rule rows with their history, the
certificates a zone requires, and refreshing an alert's correlation.

The engine reloads the rules whenever the history grows (``alerts.rule_store.rules_version``),
so a change made here is what the running engine judges by within
``SMARTSITE_ALERTS_RULES_REFRESH_SECONDS``.

Who may change which scope: an administrator any; a regulator the device-kind rules only when
city-wide, and the project and device rules of projects in their district; an officer the
project and device rules of their own projects; nobody else. Kind-level rules are readable by
everyone; project and device rules only in scope (else 404, as if absent).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from alerts.rule_store import RuleChange, RuleError, RuleVersion, delete_rule, put_rule
from alerts.rules import KEY_RE
from server.deps import Conn, Current, require, scoped_project
from server.errors import ApiError, forbidden, not_found
from server.pagination import Page, Paging
from server.principal import Principal, in_scope

router = APIRouter(tags=["rules"])

EDIT_ROLES = ("admin", "regulator", "officer")
Editor = Annotated[Principal, Depends(require(*EDIT_ROLES))]


class RuleOut(BaseModel):
    id: int
    key: str
    device_kind: str
    project_id: str | None
    device_id: str | None
    scope: str = Field(description="kind, project or device: the most specific wins.")
    enabled: bool
    spec: dict[str, Any]
    revision: int
    updated_at: datetime
    updated_by: str
    note: str


_RULE_COLUMNS = (
    "r.id, r.key, r.device_kind, r.project_id, r.device_id, r.scope, r.enabled, r.spec, "
    "r.revision, r.updated_at, r.updated_by, r.note"
)
# The project a rule row belongs to (a device row: its device's); NULL for kind-level rows.
_RULE_PROJECT = (
    "coalesce(r.project_id, (SELECT d.project_id FROM devices d WHERE d.id = r.device_id))"
)


def _project_of_scope(
    conn: psycopg.Connection, project_id: str | None, device_id: str | None
) -> str | None:
    if device_id is not None:
        row = conn.execute("SELECT project_id FROM devices WHERE id = %s", (device_id,)).fetchone()
        return row[0] if row else None
    return project_id


def _may_edit(
    conn: psycopg.Connection, p: Principal, project_id: str | None, device_id: str | None
) -> None:
    """Raise 404 (scope not visible) or 403 (visible, not theirs to change)."""
    if project_id is None and device_id is None:
        if p.role == "admin" or (p.role == "regulator" and p.project_ids is None):
            return
        raise forbidden(
            "device-kind rules (every project) are changed by an administrator or a city-wide "
            "regulator; set a project or device rule instead"
        )
    project = _project_of_scope(conn, project_id, device_id)
    if project is None or not p.sees(project):
        raise not_found("device" if device_id is not None else "project")
    if p.role not in EDIT_ROLES:
        raise forbidden(f"only {', '.join(EDIT_ROLES)} may change rules")


@router.get("/api/rules")
def list_rules(
    p: Current,
    conn: Conn,
    page: Paging,
    project: Annotated[str | None, Query(max_length=64, description="Project rows of it.")] = None,
    device: Annotated[str | None, Query(max_length=64, description="Device rows of it.")] = None,
    kind: Annotated[str | None, Query(max_length=32, description="Device kind.")] = None,
    key: Annotated[str | None, Query(max_length=64, description="Rule key.")] = None,
) -> Page[RuleOut]:
    """Rule rows: every device-kind rule, and the project and device rules in scope."""
    where = (
        f" WHERE (r.scope = 'kind' OR {in_scope(_RULE_PROJECT)})"
        " AND (%(project)s::text IS NULL OR r.project_id = %(project)s)"
        " AND (%(device)s::text IS NULL OR r.device_id = %(device)s)"
        " AND (%(kind)s::text IS NULL OR r.device_kind = %(kind)s)"
        " AND (%(key)s::text IS NULL OR r.key = %(key)s)"
    )
    args = {"pids": p.pids, "project": project, "device": device, "kind": kind, "key": key}
    total = conn.execute("SELECT count(*) FROM alert_rules r" + where, args).fetchone()
    rows = conn.execute(
        f"SELECT {_RULE_COLUMNS} FROM alert_rules r"
        + where
        + " ORDER BY r.key, r.device_kind, r.scope, r.id LIMIT %(limit)s OFFSET %(offset)s",
        {**args, "limit": page.limit, "offset": page.offset},
    ).fetchall()
    names = list(RuleOut.model_fields)
    items = [RuleOut(**dict(zip(names, r, strict=True))) for r in rows]
    return Page(items=items, total=total[0] if total else 0, **page.model_dump())


def _rule(conn: psycopg.Connection, rule_id: int) -> RuleOut | None:
    row = conn.execute(
        f"SELECT {_RULE_COLUMNS} FROM alert_rules r WHERE r.id = %s", (rule_id,)
    ).fetchone()
    return None if row is None else RuleOut(**dict(zip(RuleOut.model_fields, row, strict=True)))


@router.put("/api/rules")
def put_rule_change(change: RuleChange, p: Editor, conn: Conn) -> RuleOut:
    """Create or replace the rule of the change's key and scope (the history records who)."""
    _may_edit(conn, p, change.project_id, change.device_id)
    try:
        row = put_rule(conn, change, by=p.name)
    except RuleError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    out = _rule(conn, row.id)
    assert out is not None
    return out


class Deleted(BaseModel):
    id: int
    deleted: bool


@router.delete("/api/rules/{rule_id}")
def delete_rule_by_id(
    rule_id: int,
    p: Editor,
    conn: Conn,
    note: Annotated[str, Query(max_length=500, description="Why; kept in the history.")] = "",
) -> Deleted:
    """Delete a rule row; a less specific one takes over (the history keeps it)."""
    rule = _rule(conn, rule_id)
    if rule is None:
        raise not_found("rule")
    if rule.scope != "kind":
        project = _project_of_scope(conn, rule.project_id, rule.device_id)
        if project is None or not p.sees(project):
            raise not_found("rule")
    _may_edit(conn, p, rule.project_id, rule.device_id)
    return Deleted(id=rule_id, deleted=delete_rule(conn, rule_id, by=p.name, note=note))


@router.get("/api/rules/history")
def rule_history(
    p: Current,
    conn: Conn,
    key: Annotated[str, Query(pattern=KEY_RE.pattern, description="Rule key.")],
) -> list[RuleVersion]:
    """Every change of the rule rows of ``key`` in scope, oldest first: who, when, why."""
    rows = conn.execute(
        "SELECT h.rule_id, h.operation, h.key, h.device_kind, h.project_id, h.device_id,"
        " h.enabled, h.spec, h.revision, h.changed_at, h.changed_by, h.note"
        " FROM alert_rule_history h WHERE h.key = %(key)s AND ("
        " (h.project_id IS NULL AND h.device_id IS NULL) OR "
        + in_scope(
            "coalesce(h.project_id, (SELECT d.project_id FROM devices d WHERE d.id = h.device_id))"
        )
        + ") ORDER BY h.id",
        {"key": key, "pids": p.pids},
    ).fetchall()
    names = list(RuleVersion.model_fields)
    return [RuleVersion(**dict(zip(names, r, strict=True))) for r in rows]


# --- zone certificate requirements --------------------------------------------------------------


class ZoneRequirement(BaseModel):
    zone: str = Field(min_length=1, max_length=100, description="Zone name (edge or BIM).")
    certificate_type: str = Field(
        min_length=1, max_length=100, description="e.g. special_operations:tower_crane."
    )


def _requirements(conn: psycopg.Connection, project_id: str) -> list[ZoneRequirement]:
    rows = conn.execute(
        "SELECT zone, certificate_type FROM zone_certificate_requirements WHERE project_id = %s"
        " ORDER BY zone, certificate_type",
        (project_id,),
    ).fetchall()
    return [ZoneRequirement(zone=z, certificate_type=c) for z, c in rows]


@router.get("/api/projects/{project_id}/zone-requirements")
def get_zone_requirements(project_id: str, p: Current, conn: Conn) -> list[ZoneRequirement]:
    """Certificates each zone of the project requires of whoever works in it."""
    scoped_project(conn, p, project_id)
    return _requirements(conn, project_id)


@router.put("/api/projects/{project_id}/zone-requirements")
def put_zone_requirements(
    project_id: str, body: list[ZoneRequirement], p: Editor, conn: Conn
) -> list[ZoneRequirement]:
    """Replace the project's requirements with ``body`` (all zones at once)."""
    scoped_project(conn, p, project_id)
    with conn.transaction():
        conn.execute(
            "DELETE FROM zone_certificate_requirements WHERE project_id = %s", (project_id,)
        )
        for r in body:
            conn.execute(
                "INSERT INTO zone_certificate_requirements (project_id, zone, certificate_type)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (project_id, r.zone, r.certificate_type),
            )
    return _requirements(conn, project_id)


@router.delete("/api/projects/{project_id}/zone-requirements")
def delete_zone_requirements(
    project_id: str,
    p: Editor,
    conn: Conn,
    zone: Annotated[str, Query(min_length=1, max_length=100)],
    certificate_type: Annotated[
        str | None, Query(max_length=100, description="None: every requirement of the zone.")
    ] = None,
) -> list[ZoneRequirement]:
    """Remove one requirement of a zone, or all of them; the rest are returned."""
    scoped_project(conn, p, project_id)
    conn.execute(
        "DELETE FROM zone_certificate_requirements WHERE project_id = %s AND zone = %s"
        " AND (%s::text IS NULL OR certificate_type = %s)",
        (project_id, zone, certificate_type, certificate_type),
    )
    return _requirements(conn, project_id)
