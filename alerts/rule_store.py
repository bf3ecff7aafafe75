"""Rules in the database: read them, change them (history by trigger), seed the defaults."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, get_args

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts.defaults import DEFAULT_RULES, WORKER_CERTIFICATE_RULE
from alerts.rules import ANY_KIND, KEY_RE, RuleBook, RuleKind, RuleRow, RuleSpec
from emergency.warnings import overrides_version, with_overrides
from smartsite.db.registry import DeviceKind
from smartsite.protocol.messages import Rule as EdgeRule

log = logging.getLogger(__name__)

DEVICE_KINDS = frozenset(get_args(DeviceKind))
SEED_ACTOR = "system:defaults"
_COLUMNS = "id, key, device_kind, project_id, device_id, enabled, spec, revision"


class RuleError(ValueError):
    """A rule change that cannot be made, and why."""


class RuleChange(BaseModel):
    """A rule row as the API and CLI hand it in."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY_RE.pattern, description="Rule key, e.g. crane_moment.")
    device_kind: str = Field(description="Device kind it applies to, or '*' for every kind.")
    project_id: str | None = Field(None, description="Project scope; None: every project.")
    device_id: str | None = Field(None, description="Device scope (then no project_id).")
    enabled: bool = Field(True, description="False switches the rule off for this scope.")
    spec: RuleSpec = Field(description="The complete rule for this scope.")
    note: str = Field("", max_length=500, description="Why it changed; kept in the history.")


def _row(r: tuple[Any, ...]) -> RuleRow | None:
    rid, key, kind, project, device, enabled, spec, revision = r
    try:
        parsed = RuleSpec.model_validate(spec)
    except ValidationError as exc:  # written by an older hub, or by hand: skip, say so
        log.error("alert rule %s (%s) is not a valid rule, ignored: %s", rid, key, exc)
        return None
    return RuleRow(rid, key, kind, project, device, enabled, parsed, revision)


def load_rules(conn: psycopg.Connection) -> RuleBook:
    """The rules in force now: the stored rows, made stricter for the projects an early
    warning in force lowers thresholds for (``emergency.warnings``)."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM alert_rules ORDER BY id").fetchall()
    return RuleBook(with_overrides(conn, [r for r in map(_row, rows) if r is not None]))


def rules_version(conn: psycopg.Connection) -> int:
    """Grows with every rule change (insert, update, delete): cheap change detection. While
    early warnings with threshold overrides are in force, a number above 2**40 that also names
    that set, so the version changes when a warning starts, ends or is cancelled."""
    row = conn.execute("SELECT coalesce(max(id), 0) FROM alert_rule_history").fetchone()
    version = int(row[0]) if row else 0
    warnings = overrides_version(conn)
    return version + (warnings << 40) if warnings else version


# Edge-kind rules: those the edge judges, and the one the hub judges from what the edge
# recognised (a worker lacking a certificate the zone requires).
EDGE_KEYS = (*(r.value for r in EdgeRule), WORKER_CERTIFICATE_RULE)


def _check(conn: psycopg.Connection, c: RuleChange) -> None:
    if c.device_kind != ANY_KIND and c.device_kind not in DEVICE_KINDS:
        raise RuleError(f"unknown device kind {c.device_kind!r}")
    if c.device_id is not None and c.project_id is not None:
        raise RuleError("a device-scoped rule names the device only (its project follows)")
    if c.spec.kind is RuleKind.EDGE and c.key not in EDGE_KEYS:
        raise RuleError(
            f"an edge rule's key is the edge rule it handles, one of "
            f"{', '.join(EDGE_KEYS)}; not {c.key!r}"
        )
    if c.device_id is not None:
        row = conn.execute("SELECT kind FROM devices WHERE id = %s", (c.device_id,)).fetchone()
        if row is None:
            raise RuleError(f"no device {c.device_id!r}")
        if c.device_kind not in (ANY_KIND, row[0]):
            raise RuleError(f"device {c.device_id!r} is a {row[0]}, not a {c.device_kind}")
    if (
        c.project_id is not None
        and not conn.execute("SELECT 1 FROM projects WHERE id = %s", (c.project_id,)).fetchone()
    ):
        raise RuleError(f"no project {c.project_id!r}")


def put_rule(conn: psycopg.Connection, change: RuleChange, *, by: str) -> RuleRow:
    """Create or replace the rule of ``change``'s key and scope; the trigger records it."""
    _check(conn, change)
    spec = Jsonb(change.spec.model_dump(mode="json", exclude_defaults=False))
    row = conn.execute(
        f"INSERT INTO alert_rules (key, device_kind, project_id, device_id, enabled, spec, "
        f"updated_by, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (key, device_kind, project_id, device_id) DO UPDATE SET "
        f"enabled = EXCLUDED.enabled, spec = EXCLUDED.spec, updated_by = EXCLUDED.updated_by, "
        f"note = EXCLUDED.note RETURNING {_COLUMNS}",
        (
            change.key,
            change.device_kind,
            change.project_id,
            change.device_id,
            change.enabled,
            spec,
            by,
            change.note,
        ),
    ).fetchone()
    assert row is not None
    out = _row(row)
    assert out is not None
    return out


def delete_rule(conn: psycopg.Connection, rule_id: int, *, by: str, note: str = "") -> bool:
    """Delete one rule row (a less specific one takes over); the history keeps it."""
    with conn.transaction():
        conn.execute("SELECT set_config('smartsite.actor', %s, true)", (by,))
        conn.execute("SELECT set_config('smartsite.note', %s, true)", (note,))
        cur = conn.execute("DELETE FROM alert_rules WHERE id = %s", (rule_id,))
    return cur.rowcount == 1


def seed_defaults(conn: psycopg.Connection) -> list[str]:
    """Insert the default rules (device-kind scope) that were never in the database. A default
    an administrator changed or deleted stays as they left it."""
    seen = {
        (k, kind)
        for k, kind in conn.execute(
            "SELECT DISTINCT key, device_kind FROM alert_rule_history "
            "WHERE project_id IS NULL AND device_id IS NULL"
        )
    }
    added = []
    for d in DEFAULT_RULES:
        if (d.key, d.device_kind) in seen:
            continue
        put_rule(
            conn,
            RuleChange(key=d.key, device_kind=d.device_kind, spec=d.spec, note="default"),
            by=SEED_ACTOR,
        )
        added.append(f"{d.key}/{d.device_kind}")
    return added


class RuleVersion(BaseModel):
    """One entry of a rule's history."""

    rule_id: int
    operation: str
    key: str
    device_kind: str
    project_id: str | None
    device_id: str | None
    enabled: bool
    spec: dict[str, Any]
    revision: int
    changed_at: datetime
    changed_by: str
    note: str


def rule_history(conn: psycopg.Connection, key: str) -> list[RuleVersion]:
    rows = conn.execute(
        "SELECT rule_id, operation, key, device_kind, project_id, device_id, enabled, spec, "
        "revision, changed_at, changed_by, note FROM alert_rule_history WHERE key = %s "
        "ORDER BY id",
        (key,),
    ).fetchall()
    names = list(RuleVersion.model_fields)
    return [RuleVersion(**dict(zip(names, r, strict=True))) for r in rows]
