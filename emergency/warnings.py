"""Early-warning broadcasts (预警发布): a regulator warns a district, a list of projects or all
projects of its scope; each targeted project acknowledges; the unacknowledged surface.

A warning may carry threshold overrides — e.g. a strong-wind warning lowers the crane's wind
limits — which :func:`apply_overrides` applies to the rules of the targeted projects while the
warning is in force (from ``starts_at`` until ``ends_at`` or its cancellation). The alert
engine gets them through ``alerts.rule_store.load_rules``, and ``rules_version`` changes when
the set of warnings in force changes, so the engine reloads at the start and at the end.
An override can only make a rule stricter: each level becomes the stricter of the rule's own
and the override's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from alerts.rules import KEY_RE, Direction, Levels, Limit, RuleKind, RuleRow, RuleSpec

WarningKind = Literal["strong_wind", "heavy_rain", "heat", "other"]
WarningLevel = Literal["blue", "yellow", "orange", "red"]
Target = Literal["district", "projects", "all"]
State = Literal["scheduled", "in_force", "ended", "cancelled"]

IN_FORCE = "w.cancelled_at IS NULL AND w.starts_at <= now() AND w.ends_at > now()"


class WarningError(ValueError):
    """A warning that cannot be issued or changed, and why."""


class Override(BaseModel):
    """Lowered levels of one rule while the warning is in force."""

    rule: str = Field(pattern=KEY_RE.pattern, description="Rule key, e.g. crane_wind.")
    warning: float | None = Field(None, description="预警 level in the rule's unit.")
    alarm: float | None = Field(None, description="报警 level, e.g. 8.0 m/s for crane_wind.")

    @model_validator(mode="after")
    def _something(self) -> Override:
        if self.warning is None and self.alarm is None:
            raise ValueError("an override lowers the warning level, the alarm level or both")
        return self


class WarningIn(BaseModel):
    kind: WarningKind = Field(description="strong_wind, heavy_rain, heat or other.")
    level: WarningLevel = Field(description="蓝 blue / 黄 yellow / 橙 orange / 红 red.")
    title: str = Field(min_length=1, max_length=200)
    text: str = Field("", max_length=5000, description="What to do, e.g. stop tower cranes.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    target: Target = Field(description="A district, a list of projects, or all in scope.")
    district: str | None = Field(None, max_length=12, description="target=district: its code.")
    projects: list[str] | None = Field(
        None, max_length=1000, description="target=projects: their ids."
    )
    overrides: list[Override] = Field(
        default_factory=list, max_length=50, description="Rules made stricter meanwhile."
    )

    @model_validator(mode="after")
    def _consistent(self) -> WarningIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if (self.target == "district") != (self.district is not None):
            raise ValueError("give district exactly when target is district")
        if (self.target == "projects") != bool(self.projects):
            raise ValueError("give projects exactly when target is projects")
        if len({o.rule for o in self.overrides}) != len(self.overrides):
            raise ValueError("one override per rule")
        return self


class TargetState(BaseModel):
    project_id: str
    project_name: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None


class WarningOut(BaseModel):
    id: int
    kind: WarningKind
    level: WarningLevel
    title: str
    text: str
    starts_at: datetime
    ends_at: datetime
    target: Target
    district_code: str | None
    overrides: list[Override]
    issued_by: str
    issued_at: datetime
    cancelled_at: datetime | None
    cancelled_by: str | None
    cancel_reason: str | None
    state: State
    targets: int = Field(description="Targeted projects in the caller's scope.")
    acknowledged: int = Field(description="Of those, acknowledged.")


class WarningDetail(WarningOut):
    projects: list[TargetState] = Field(description="Per targeted project in scope.")


class Awaiting(BaseModel):
    """A targeted project that has not acknowledged a warning not yet over."""

    warning_id: int
    kind: WarningKind
    level: WarningLevel
    title: str
    starts_at: datetime
    ends_at: datetime
    issued_at: datetime
    project_id: str
    project_name: str


# --- issuing, acknowledging, cancelling ---------------------------------------------------------


def _resolve_targets(conn: psycopg.Connection, w: WarningIn, pids: list[str] | None) -> list[str]:
    """The targeted projects (within ``pids``; None: every project). LookupError names what is
    absent or out of scope (404 to the caller)."""
    if w.target == "projects":
        assert w.projects is not None
        want = sorted(set(w.projects))
        rows = conn.execute(
            "SELECT id FROM projects WHERE id = ANY(%s)"
            " AND (%s::text[] IS NULL OR id = ANY(%s::text[]))",
            (want, pids, pids),
        ).fetchall()
        found = {r[0] for r in rows}
        missing = [p for p in want if p not in found]
        if missing:
            raise LookupError(f"project {missing[0]}")
        return want
    known = conn.execute("SELECT 1 FROM districts WHERE code = %s", (w.district,)).fetchone()
    if w.target == "district" and not known:
        raise LookupError("district")
    rows = conn.execute(
        "SELECT id FROM projects WHERE (%s::text IS NULL OR district_code = %s)"
        " AND (%s::text[] IS NULL OR id = ANY(%s::text[])) AND status <> 'completed' ORDER BY id",
        (w.district, w.district, pids, pids),
    ).fetchall()
    if w.target == "district" and not rows and pids is not None:
        # nothing of the district in scope: to this regulator the district is not theirs
        raise LookupError("district")
    return [r[0] for r in rows]


def _check_overrides(conn: psycopg.Connection, overrides: list[Override]) -> None:
    for o in overrides:
        kinds = {
            r[0]
            for r in conn.execute("SELECT spec->>'kind' FROM alert_rules WHERE key = %s", (o.rule,))
        }
        if not kinds:
            raise WarningError(f"no alert rule {o.rule!r}")
        if kinds <= {RuleKind.EDGE.value}:
            raise WarningError(f"rule {o.rule!r} is judged at the edge: it has no levels")


def issue(conn: psycopg.Connection, w: WarningIn, pids: list[str] | None, by: str) -> int:
    targets = _resolve_targets(conn, w, pids)
    if not targets:
        raise WarningError("no projects to warn in your scope")
    _check_overrides(conn, w.overrides)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO emergency_warnings (kind, level, title, text, starts_at, ends_at,"
            " target, district_code, overrides, issued_by) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s) RETURNING id",
            (
                w.kind,
                w.level,
                w.title,
                w.text,
                w.starts_at,
                w.ends_at,
                w.target,
                w.district,
                Jsonb([o.model_dump() for o in w.overrides]),
                by,
            ),
        ).fetchone()
        assert row is not None
        wid = int(row[0])
        conn.cursor().executemany(
            "INSERT INTO emergency_warning_targets (warning_id, project_id) VALUES (%s, %s)",
            [(wid, p) for p in targets],
        )
    return wid


def targets_of(conn: psycopg.Connection, warning_id: int) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT project_id FROM emergency_warning_targets WHERE warning_id = %s"
            " ORDER BY project_id",
            (warning_id,),
        )
    ]


def acknowledge(
    conn: psycopg.Connection, warning_id: int, projects: Iterable[str], by: str, note: str
) -> None:
    """Acknowledge for ``projects`` (targets of the warning); acknowledging again keeps the
    first acknowledgement. WarningError: the warning is cancelled or over."""
    row = conn.execute(
        "SELECT cancelled_at IS NOT NULL, ends_at <= now() FROM emergency_warnings WHERE id = %s",
        (warning_id,),
    ).fetchone()
    if row is None:
        raise LookupError("warning")
    if row[0]:
        raise WarningError("the warning was cancelled")
    if row[1]:
        raise WarningError("the warning is over")
    conn.cursor().executemany(
        "INSERT INTO emergency_warning_acks (warning_id, project_id, acknowledged_by, note)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [(warning_id, p, by, note) for p in projects],
    )


def cancel(conn: psycopg.Connection, warning_id: int, by: str, reason: str) -> None:
    cur = conn.execute(
        "UPDATE emergency_warnings SET cancelled_at = now(), cancelled_by = %s,"
        " cancel_reason = %s WHERE id = %s AND cancelled_at IS NULL AND ends_at > now()",
        (by, reason, warning_id),
    )
    if cur.rowcount != 1:
        raise WarningError("the warning is already cancelled or over")


# --- reading ------------------------------------------------------------------------------------

_STATE = (
    "CASE WHEN w.cancelled_at IS NOT NULL THEN 'cancelled' WHEN w.ends_at <= now() THEN 'ended'"
    " WHEN w.starts_at > now() THEN 'scheduled' ELSE 'in_force' END"
)
_SCOPED_TARGET = "(%(pids)s::text[] IS NULL OR t.project_id = ANY(%(pids)s::text[]))"
_SELECT = (
    "SELECT w.id, w.kind, w.level, w.title, w.text, w.starts_at, w.ends_at, w.target,"
    f" w.district_code, w.overrides, w.issued_by, w.issued_at, w.cancelled_at, w.cancelled_by,"
    f" w.cancel_reason, {_STATE} AS state, count(t.project_id) AS targets,"
    " count(a.project_id) AS acknowledged"
    " FROM emergency_warnings w JOIN emergency_warning_targets t ON t.warning_id = w.id"
    " LEFT JOIN emergency_warning_acks a ON a.warning_id = t.warning_id"
    " AND a.project_id = t.project_id"
    f" WHERE {_SCOPED_TARGET}"
)
_GROUP = " GROUP BY w.id"


def list_warnings(
    conn: psycopg.Connection,
    pids: list[str] | None,
    *,
    states: list[str] | None = None,
    kind: str | None = None,
    project: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[WarningOut], int]:
    """Warnings with a target in ``pids``, newest first."""
    where = (
        f" AND (%(states)s::text[] IS NULL OR {_STATE} = ANY(%(states)s::text[]))"
        " AND (%(kind)s::text IS NULL OR w.kind = %(kind)s)"
        " AND (%(project)s::text IS NULL OR EXISTS (SELECT 1 FROM emergency_warning_targets x"
        " WHERE x.warning_id = w.id AND x.project_id = %(project)s))"
    )
    args = {"pids": pids, "states": states, "kind": kind, "project": project}
    with conn.cursor(row_factory=dict_row) as cur:
        total = cur.execute(
            f"SELECT count(*) AS n FROM ({_SELECT}{where}{_GROUP}) s", args
        ).fetchone()
        rows = cur.execute(
            _SELECT + where + _GROUP + " ORDER BY w.issued_at DESC, w.id DESC"
            " LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": limit, "offset": offset},
        ).fetchall()
    return [WarningOut(**r) for r in rows], int(total["n"]) if total else 0


def get_warning(
    conn: psycopg.Connection, warning_id: int, pids: list[str] | None
) -> WarningDetail | None:
    """The warning with its targets in ``pids``; None: absent or no target in scope."""
    args = {"pids": pids, "id": warning_id}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " AND w.id = %(id)s" + _GROUP, args).fetchone()
        if row is None:
            return None
        targets = cur.execute(
            "SELECT t.project_id, p.name AS project_name, a.acknowledged_at, a.acknowledged_by,"
            " a.note FROM emergency_warning_targets t JOIN projects p ON p.id = t.project_id"
            " LEFT JOIN emergency_warning_acks a ON a.warning_id = t.warning_id"
            " AND a.project_id = t.project_id"
            f" WHERE t.warning_id = %(id)s AND {_SCOPED_TARGET}"
            " ORDER BY a.acknowledged_at IS NOT NULL, t.project_id",
            args,
        ).fetchall()
    return WarningDetail(**row, projects=[TargetState(**t) for t in targets])


def awaiting(
    conn: psycopg.Connection, pids: list[str] | None, *, project: str | None = None
) -> list[Awaiting]:
    """Targeted projects in ``pids`` that have not acknowledged a warning still in force or
    scheduled, earliest warning first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT w.id AS warning_id, w.kind, w.level, w.title, w.starts_at, w.ends_at,"
            " w.issued_at, t.project_id, p.name AS project_name"
            " FROM emergency_warnings w JOIN emergency_warning_targets t ON t.warning_id = w.id"
            " JOIN projects p ON p.id = t.project_id"
            " LEFT JOIN emergency_warning_acks a ON a.warning_id = t.warning_id"
            " AND a.project_id = t.project_id"
            " WHERE w.cancelled_at IS NULL AND w.ends_at > now() AND a.project_id IS NULL"
            f" AND {_SCOPED_TARGET} AND (%(project)s::text IS NULL OR t.project_id = %(project)s)"
            " ORDER BY w.issued_at, w.id, t.project_id",
            {"pids": pids, "project": project},
        ).fetchall()
    return [Awaiting(**r) for r in rows]


# --- threshold overrides for the alert engine ---------------------------------------------------


def active_overrides(conn: psycopg.Connection) -> dict[str, list[tuple[int, Override]]]:
    """Per project, the overrides of the warnings in force now (oldest warning first)."""
    rows = conn.execute(
        "SELECT w.id, w.overrides, t.project_id FROM emergency_warnings w"
        " JOIN emergency_warning_targets t ON t.warning_id = w.id"
        f" WHERE {IN_FORCE} AND w.overrides <> '[]'::jsonb ORDER BY w.id, t.project_id"
    ).fetchall()
    out: dict[str, list[tuple[int, Override]]] = {}
    for wid, overrides, project in rows:
        for o in overrides:
            out.setdefault(project, []).append((wid, Override.model_validate(o)))
    return out


def overrides_version(conn: psycopg.Connection) -> int:
    """0 when no warning with overrides is in force, else a number naming the set in force
    (changes when a warning starts, ends or is cancelled)."""
    rows = conn.execute(
        f"SELECT w.id FROM emergency_warnings w WHERE {IN_FORCE}"
        " AND w.overrides <> '[]'::jsonb ORDER BY w.id"
    ).fetchall()
    if not rows:
        return 0
    return zlib.crc32(",".join(str(r[0]) for r in rows).encode()) + 1


def _stricter(limit: Limit | None, value: float, direction: Direction) -> Limit:
    if limit is None:
        return Limit(value=value)
    if limit.value is not None:
        pick = min if direction is Direction.ABOVE else max
        value = pick(limit.value, value)
    return Limit(value=value, rated=limit.rated, factor=limit.factor)


def _lower(levels: Levels, o: Override, direction: Direction) -> Levels:
    alarm = levels.alarm
    if o.alarm is not None:
        alarm = _stricter(alarm, o.alarm, direction)
    warning, fraction = levels.warning, levels.warning_fraction
    if o.warning is not None:
        warning, fraction = _stricter(warning, o.warning, direction), None
    return Levels.model_construct(warning=warning, alarm=alarm, warning_fraction=fraction)


def lowered_spec(spec: RuleSpec, o: Override, warning_id: int) -> RuleSpec:
    """``spec`` with each level the stricter of its own and the override's."""
    if spec.kind is RuleKind.EDGE:
        return spec
    levels = _lower(spec.levels, o, spec.direction) if spec.levels is not None else None
    windows = tuple(
        w.model_copy(update={"levels": _lower(w.levels, o, spec.direction)}) for w in spec.windows
    )
    return spec.model_copy(
        update={
            "levels": levels,
            "windows": windows,
            "title": f"{spec.title} (预警 #{warning_id})"[:200],
            "source": (
                f"Lowered while early warning #{warning_id} is in force "
                f"(warning {o.warning}, alarm {o.alarm}). {spec.source}"
            )[:1000],
        }
    )


def apply_overrides(
    rows: list[RuleRow],
    active: dict[str, list[tuple[int, Override]]],
    device_projects: dict[str, str],
) -> list[RuleRow]:
    """The rule rows with the overrides in force: a targeted project's rows of an overridden
    key (project- and device-scoped) made stricter, and a stricter project-scoped copy of the
    kind-wide rows for a targeted project that has no row of its own for that key."""
    if not active:
        return rows
    own = {(r.key, r.project_id) for r in rows if r.project_id is not None}
    out: list[RuleRow] = []
    for r in rows:
        project = r.project_id or (device_projects.get(r.device_id) if r.device_id else None)
        if project is not None:
            for wid, o in active.get(project, []):
                if o.rule == r.key:
                    r = replace(r, spec=lowered_spec(r.spec, o, wid))
            out.append(r)
            continue
        out.append(r)  # kind-wide: stays for the projects without a warning
        for p, overrides in active.items():
            mine = [(wid, o) for wid, o in overrides if o.rule == r.key]
            if mine and (r.key, p) not in own:
                spec = r.spec
                for wid, o in mine:
                    spec = lowered_spec(spec, o, wid)
                out.append(replace(r, project_id=p, spec=spec))
    return out


def device_projects(conn: psycopg.Connection, rows: Iterable[RuleRow]) -> dict[str, str]:
    ids = sorted({r.device_id for r in rows if r.device_id is not None})
    if not ids:
        return {}
    return dict(
        conn.execute("SELECT id, project_id FROM devices WHERE id = ANY(%s)", (ids,)).fetchall()
    )


def with_overrides(conn: psycopg.Connection, rows: list[RuleRow]) -> list[RuleRow]:
    """``rows`` as they are in force now (the overrides of the warnings in force applied)."""
    active = active_overrides(conn)
    if not active:
        return rows
    return apply_overrides(rows, active, device_projects(conn, rows))
