"""The closed loop of an alert (推送 → 整改 → 复核销号):

    open → acknowledged → rectifying (responsible person, deadline)
         → resolved (note, photo evidence) → closed (verified by a regulator; the
           violation goes into the general contractor's credit record, see alerts.credit)
    resolved or closed → reopened → rectifying → ...

Every transition is a row in ``alert_transitions`` (who, role, when, from, to, note, evidence)
and an ``alert_outbox`` entry, written in the transaction that changes the alert. Illegal
transitions raise :class:`IllegalTransitionError`, naming the current status and the allowed next
ones. The lifecycle is independent of the condition: an alert whose readings went back to
normal (cleared) still waits for its rectification to be verified.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from alerts.credit import on_alert_closed
from smartsite.protocol.topics import SEGMENT_PATTERN


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RECTIFYING = "rectifying"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


NEXT: dict[Status, tuple[Status, ...]] = {
    Status.OPEN: (Status.ACKNOWLEDGED,),
    Status.ACKNOWLEDGED: (Status.RECTIFYING,),
    Status.RECTIFYING: (Status.RESOLVED,),
    Status.RESOLVED: (Status.CLOSED, Status.REOPENED),
    Status.CLOSED: (Status.REOPENED,),
    Status.REOPENED: (Status.RECTIFYING,),
}

Role = Literal["admin", "regulator", "officer", "enterprise", "data_sharing", "system"]

# Who may move an alert into a status. Verifying (closing) and rejecting a rectification
# (reopening) is the regulator's call (复核销号); the site side does the rest.
MAY: dict[Status, frozenset[str]] = {
    Status.ACKNOWLEDGED: frozenset({"officer", "enterprise", "regulator", "admin"}),
    Status.RECTIFYING: frozenset({"officer", "enterprise", "regulator", "admin"}),
    Status.RESOLVED: frozenset({"officer", "enterprise", "admin"}),
    Status.CLOSED: frozenset({"regulator", "admin"}),
    Status.REOPENED: frozenset({"regulator", "admin"}),
}

ENGINE_ACTOR = ("alert-engine", "system")


class LifecycleError(Exception):
    """A lifecycle change that cannot be made; the message says why."""


class AlertNotFoundError(LifecycleError):
    pass


class IllegalTransitionError(LifecycleError):
    def __init__(self, alert_id: uuid.UUID, current: Status, wanted: Status) -> None:
        self.alert_id, self.current, self.wanted = alert_id, current, wanted
        self.allowed = NEXT[current]
        allowed = ", ".join(s.value for s in self.allowed) or "nothing"
        super().__init__(
            f"alert {alert_id} is {current.value}: it can go to {allowed}, not {wanted.value}"
        )


class NotPermittedError(LifecycleError):
    pass


class MissingDetailError(LifecycleError):
    pass


class Actor(BaseModel):
    """Who makes a change: a user name and the role they act in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, description="User name.")
    role: Role = Field(description="Role the change is made in.")


class Transition(BaseModel):
    """One recorded transition."""

    at: datetime
    actor: str
    actor_role: str
    from_status: Status | None
    to_status: Status
    note: str
    evidence_id: str | None
    responsible: str | None
    deadline: datetime | None


def transition(
    conn: psycopg.Connection,
    alert_id: uuid.UUID,
    to: Status,
    *,
    by: Actor,
    note: str = "",
    responsible: str | None = None,
    deadline: datetime | None = None,
    evidence_id: str | None = None,
    now: datetime | None = None,
) -> Status:
    """Move ``alert_id`` to ``to`` in one transaction; return the status it came from."""
    now = now or datetime.now(UTC)
    to = Status(to)
    if by.role not in MAY.get(to, frozenset()):
        allowed = ", ".join(sorted(MAY.get(to, ()))) or "nobody"
        raise NotPermittedError(f"a {by.role} cannot move an alert to {to.value} (may: {allowed})")
    _check_details(to, note, responsible, deadline, evidence_id, now)
    with conn.transaction():
        row = conn.execute(
            "SELECT status, project_id FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)
        ).fetchone()
        if row is None:
            raise AlertNotFoundError(f"no alert {alert_id}")
        current, project_id = Status(row[0]), row[1]
        if to not in NEXT[current]:
            raise IllegalTransitionError(alert_id, current, to)
        sets, args = _columns(to, note, responsible, deadline, evidence_id, now)
        conn.execute(
            f"UPDATE alerts SET status = %s, status_changed_at = %s, updated_at = %s, {sets} "
            f"WHERE id = %s",
            (to.value, now, now, *args, alert_id),
        )
        record(
            conn,
            alert_id,
            project_id,
            current,
            to,
            by.name,
            by.role,
            now,
            note=note,
            evidence_id=evidence_id,
            responsible=responsible,
            deadline=deadline,
        )
        if to is Status.CLOSED:
            # a verified alert is a confirmed violation: it goes into the contractor's credit
            # record with the close, or neither happens (alerts.credit explains the rule)
            on_alert_closed(conn, alert_id, by=by.name, now=now)
    return current


def _check_details(
    to: Status,
    note: str,
    responsible: str | None,
    deadline: datetime | None,
    evidence_id: str | None,
    now: datetime,
) -> None:
    if to is Status.RECTIFYING:
        if not responsible or deadline is None:
            raise MissingDetailError("rectifying needs a responsible person and a deadline")
        if deadline.tzinfo is None:
            raise MissingDetailError("the deadline needs a time zone")
        if deadline <= now:
            raise MissingDetailError(f"the deadline {deadline.isoformat()} has already passed")
    if to is Status.RESOLVED:
        if not note.strip():
            raise MissingDetailError("resolving needs a note saying what was done")
        if not evidence_id:
            raise MissingDetailError("resolving needs a photo (evidence id) of the rectification")
        if not re.match(SEGMENT_PATTERN, evidence_id):
            raise MissingDetailError(f"evidence id {evidence_id!r} must match {SEGMENT_PATTERN}")
    if to is Status.REOPENED and not note.strip():
        raise MissingDetailError("reopening needs a note saying what is still wrong")


def _columns(
    to: Status,
    note: str,
    responsible: str | None,
    deadline: datetime | None,
    evidence_id: str | None,
    now: datetime,
) -> tuple[str, tuple[Any, ...]]:
    if to is Status.ACKNOWLEDGED:
        return "acknowledged_at = %s", (now,)
    if to is Status.RECTIFYING:
        return "responsible = %s, deadline = %s", (responsible, deadline)
    if to is Status.RESOLVED:
        return (
            "resolved_at = %s, resolution_note = %s, resolution_evidence_id = %s",
            (now, note, evidence_id),
        )
    if to is Status.CLOSED:
        return "closed_at = %s", (now,)
    # reopened: the rejected resolution stays in the transitions; the alert waits for a new one
    return (
        "resolved_at = NULL, resolution_note = NULL, resolution_evidence_id = NULL, "
        "closed_at = NULL",
        (),
    )


def record(
    conn: psycopg.Connection,
    alert_id: uuid.UUID,
    project_id: str,
    from_status: Status | None,
    to: Status,
    actor: str,
    role: str,
    at: datetime,
    *,
    note: str = "",
    evidence_id: str | None = None,
    responsible: str | None = None,
    deadline: datetime | None = None,
) -> None:
    """Write the transition row and its outbox entry (also used by the engine on open)."""
    conn.execute(
        "INSERT INTO alert_transitions (alert_id, at, actor, actor_role, from_status, to_status, "
        "note, evidence_id, responsible, deadline) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            alert_id,
            at,
            actor,
            role,
            from_status.value if from_status else None,
            to.value,
            note,
            evidence_id,
            responsible,
            deadline,
        ),
    )
    if from_status is None:
        return  # the engine's own 'open' outbox entry says it
    audience = "regulator" if to in (Status.RESOLVED, Status.REOPENED) else "officer"
    conn.execute(
        "INSERT INTO alert_outbox (alert_id, action, audience, project_id, payload) "
        "VALUES (%s, 'transition', %s, %s, %s)",
        (
            alert_id,
            audience,
            project_id,
            Jsonb(
                {
                    "alert_id": str(alert_id),
                    "from": from_status.value,
                    "to": to.value,
                    "actor": actor,
                    "role": role,
                    "at": at.isoformat(),
                    "note": note,
                    "responsible": responsible,
                    "deadline": deadline.isoformat() if deadline else None,
                    "evidence_id": evidence_id,
                }
            ),
        ),
    )


# --- one verb per step ---------------------------------------------------------------------------


def acknowledge(
    conn: psycopg.Connection, alert_id: uuid.UUID, *, by: Actor, note: str = ""
) -> Status:
    return transition(conn, alert_id, Status.ACKNOWLEDGED, by=by, note=note)


def assign_rectification(
    conn: psycopg.Connection,
    alert_id: uuid.UUID,
    *,
    by: Actor,
    responsible: str,
    deadline: datetime,
    note: str = "",
) -> Status:
    return transition(
        conn,
        alert_id,
        Status.RECTIFYING,
        by=by,
        responsible=responsible,
        deadline=deadline,
        note=note,
    )


def resolve(
    conn: psycopg.Connection, alert_id: uuid.UUID, *, by: Actor, note: str, evidence_id: str
) -> Status:
    return transition(conn, alert_id, Status.RESOLVED, by=by, note=note, evidence_id=evidence_id)


def close(conn: psycopg.Connection, alert_id: uuid.UUID, *, by: Actor, note: str = "") -> Status:
    return transition(conn, alert_id, Status.CLOSED, by=by, note=note)


def reopen(conn: psycopg.Connection, alert_id: uuid.UUID, *, by: Actor, note: str) -> Status:
    return transition(conn, alert_id, Status.REOPENED, by=by, note=note)


def history(conn: psycopg.Connection, alert_id: uuid.UUID) -> list[Transition]:
    rows = conn.execute(
        "SELECT at, actor, actor_role, from_status, to_status, note, evidence_id, responsible, "
        "deadline FROM alert_transitions WHERE alert_id = %s ORDER BY id",
        (alert_id,),
    ).fetchall()
    names = list(Transition.model_fields)
    return [Transition(**dict(zip(names, r, strict=True))) for r in rows]


class Overdue(BaseModel):
    """A rectification past its deadline."""

    alert_id: uuid.UUID
    project_id: str
    device_id: str
    rule: str
    target: str
    severity: str
    title: str
    responsible: str
    deadline: datetime
    overdue_s: float


def overdue(
    conn: psycopg.Connection, *, now: datetime | None = None, project_id: str | None = None
) -> list[Overdue]:
    """Rectifications past their deadline, most overdue first."""
    now = now or datetime.now(UTC)
    rows = conn.execute(
        "SELECT id, project_id, device_id, rule, target, severity, title, responsible, deadline, "
        "extract(epoch FROM %s - deadline)::float8 FROM alerts "
        "WHERE status = 'rectifying' AND deadline < %s AND (%s::text IS NULL OR project_id = %s) "
        "ORDER BY deadline",
        (now, now, project_id, project_id),
    ).fetchall()
    names = list(Overdue.model_fields)
    return [Overdue(**dict(zip(names, r, strict=True))) for r in rows]
