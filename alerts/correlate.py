"""Correlation: what the registries and the BIM model say about an alert as it opens.

The engine calls :func:`correlate` inside the transaction that opens the alert and stores the
:class:`Correlation` on it (``alerts.correlation``), so an officer sees at once whether the
project is permitted, where on the building it is, who the contractors are and how they
stand, and which worker it concerns. Correlation can raise the alert's level (unpermitted
work) and its priority (unpermitted work, blacklisted or low-credit enterprises, a worker
without a required certificate); each such change is a factor appended to the alert's
factors, so severity and priority stay explainable.

Each part runs in its own savepoint and a part that fails is logged and named in
``Correlation.errors``: a registry oddity must never keep an alert from opening. Only a lost
connection propagates, because then the alert cannot be written either and the engine
retries the whole batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from alerts.evaluate import LEVEL_POINTS, Factor
from alerts.rules import Level
from bim.models import BimContext
from bim.placement import resolve
from smartsite.db import CONNECTION_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")


# Points added to the priority (0..100, the sum of the factors). Unpermitted work weighs like
# a level: it is a violation by itself, whatever the reading. A blacklisted enterprise is a
# stronger signal than a low grade; the enterprise part is capped so that a project with many
# poor subcontractors still ranks below a hard alarm on a well-run one.
UNPERMITTED_POINTS = 15
BLACKLISTED_POINTS = 15
LOW_CREDIT_POINTS = 5
MAX_ENTERPRISE_POINTS = 25
MISSING_CERTIFICATE_POINTS = 10
LOW_CREDIT_GRADES = frozenset({"C", "D"})

# A factor that only holds while the alert is a warning raised to alarm by correlation; once
# the rule escalates on its own, the level factor says alarm and this one must not count twice.
LEVEL_RAISED = "level_raised"

PermitState = Literal["valid", "missing", "expired", "suspended", "revoked"]
EnterpriseRoleOut = Literal["general_contractor", "subcontractor", "supervisor"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subject(_Out):
    """The alert being opened, as far as correlation needs it."""

    project_id: str
    device_id: str
    rule: str
    target: str = ""
    zone: str | None = Field(None, description="Image zone of an edge alert, if any.")
    level: Level
    worker_id: str | None = Field(None, description="Face-identified worker, if any.")
    event_id: uuid.UUID | None = Field(
        None, description="Edge track event; its face match names the worker if none is given."
    )
    on: date = Field(description="The alert's date in the hub's time zone (permit expiry).")


class PermitInfo(_Out):
    state: PermitState = Field(description="What the permit means for work today.")
    number: str | None = None
    status: str | None = Field(None, description="The registry's status of the permit.")
    issued_on: date | None = None
    expires_on: date | None = None


class EnterpriseInfo(_Out):
    uscc: str
    name: str
    role: EnterpriseRoleOut
    credit_score: float
    credit_grade: str
    blacklisted: bool
    low_credit: bool = Field(description="Grade C/D or score below the hub's threshold.")


class CertificateInfo(_Out):
    type: str
    number: str
    issued_on: date | None
    expires_on: date | None
    valid: bool = Field(description="Not expired on the alert's date.")


class WorkerInfo(_Out):
    id: str
    name: str
    id_number_masked: str = Field(description="Masked only: the clear number never goes here.")
    trade: str
    employer_uscc: str | None
    employer_name: str | None
    certificates: list[CertificateInfo]
    required_certificates: list[str] = Field(description="Required in the alert's zone.")
    missing_certificates: list[str] = Field(description="Required, and lacking or expired.")


class Correlation(_Out):
    """Stored on the alert as it opened (``alerts.correlation``)."""

    permit: PermitInfo | None = Field(None, description="None: could not be looked up.")
    unpermitted_work: bool = False
    bim: BimContext | None = None
    enterprises: list[EnterpriseInfo] = Field(default_factory=list)
    worker_id: str | None = None
    worker: WorkerInfo | None = Field(None, description="None: no worker, or not enrolled.")
    factors: list[dict[str, Any]] = Field(
        default_factory=list, description="The factors correlation added to the alert's."
    )
    errors: list[str] = Field(
        default_factory=list, description="Parts that failed; the rest is still stored."
    )


@dataclass(frozen=True, slots=True)
class Correlated:
    """The correlation and what it does to the alert."""

    correlation: Correlation
    level: Level
    factors: tuple[Factor, ...]


def _part(
    conn: psycopg.Connection, name: str, errors: list[str], work: Callable[[], T]
) -> T | None:
    """Run one part in a savepoint; on failure log it, note it and go on with the others."""
    try:
        with conn.transaction():
            return work()
    except CONNECTION_ERRORS:
        raise
    except Exception as exc:  # any failure of a part must not block the alert
        log.exception("alert correlation: the %s part failed", name)
        errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
        return None


def permit_of(conn: psycopg.Connection, project_id: str, on: date) -> PermitInfo:
    """The project's current permit: the best standing one (valid before suspended before
    expired or revoked), newest issue first, so a renewal outranks the permit it replaced."""
    row = conn.execute(
        "SELECT number, status, issued_on, expires_on FROM permits WHERE project_id = %s "
        "ORDER BY (status = 'valid' AND (expires_on IS NULL OR expires_on >= %s)) DESC, "
        "status = 'suspended' DESC, issued_on DESC, number LIMIT 1",
        (project_id, on),
    ).fetchone()
    if row is None:
        return PermitInfo(state="missing")
    number, status, issued_on, expires_on = row
    state: PermitState
    if status in ("suspended", "revoked", "expired"):
        state = status
    elif expires_on is not None and expires_on < on:
        state = "expired"  # the registry has not caught up with the calendar
    else:
        state = "valid"
    return PermitInfo(
        state=state, number=number, status=status, issued_on=issued_on, expires_on=expires_on
    )


def _low_credit(grade: str, score: float, threshold: float) -> bool:
    return grade.strip().upper() in LOW_CREDIT_GRADES or score < threshold


def enterprises_of(
    conn: psycopg.Connection, project_id: str, low_credit_score: float
) -> list[EnterpriseInfo]:
    """General contractor, subcontractors and supervisor (the builder is the client, whose
    credit says nothing about the safety of the work)."""
    rows = conn.execute(
        "SELECT e.uscc, e.name, pe.role, e.credit_score, e.credit_grade, e.blacklisted "
        "FROM project_enterprises pe JOIN enterprises e ON e.uscc = pe.uscc "
        "WHERE pe.project_id = %s AND pe.role <> 'builder' "
        "ORDER BY array_position(ARRAY['general_contractor', 'subcontractor', 'supervisor'], "
        "pe.role), e.uscc",
        (project_id,),
    ).fetchall()
    return [
        EnterpriseInfo(
            uscc=uscc,
            name=name,
            role=role,
            credit_score=float(score),
            credit_grade=grade,
            blacklisted=black,
            low_credit=_low_credit(grade, float(score), low_credit_score),
        )
        for uscc, name, role, score, grade, black in rows
    ]


def worker_of_event(conn: psycopg.Connection, project_id: str, event_id: uuid.UUID) -> str | None:
    """The worker the edge recognised on the alert's track event, if ingest has stored it
    (events and alerts travel separately: an event not stored yet leaves the alert without a
    worker rather than holding it back)."""
    row = conn.execute(
        "SELECT attributes->'face'->>'worker_id' FROM events WHERE event_id = %s "
        "AND project_id = %s AND attributes->'face'->>'worker_id' IS NOT NULL "
        "ORDER BY time DESC LIMIT 1",
        (event_id, project_id),
    ).fetchone()
    return row[0] if row else None


def worker_of(
    conn: psycopg.Connection, project_id: str, worker_id: str, zones: list[str], on: date
) -> WorkerInfo | None:
    """The worker's record, certificates and what the zones require; None if not enrolled."""
    row = conn.execute(
        "SELECT p.id, p.name, p.id_number_masked, p.trade, p.employer_uscc, e.name "
        "FROM persons p LEFT JOIN enterprises e ON e.uscc = p.employer_uscc WHERE p.id = %s",
        (worker_id,),
    ).fetchone()
    if row is None:
        return None
    certs = [
        CertificateInfo(type=t, number=n, issued_on=i, expires_on=x, valid=x is None or x >= on)
        for t, n, i, x in conn.execute(
            "SELECT type, number, issued_on, expires_on FROM certificates WHERE person_id = %s "
            "ORDER BY type, expires_on DESC NULLS FIRST",
            (worker_id,),
        )
    ]
    required = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT certificate_type FROM zone_certificate_requirements "
            "WHERE project_id = %s AND zone = ANY(%s) ORDER BY 1",
            (project_id, zones),
        )
    ]
    held = {c.type for c in certs if c.valid}
    return WorkerInfo(
        id=row[0],
        name=row[1],
        id_number_masked=row[2].strip(),
        trade=row[3],
        employer_uscc=row[4],
        employer_name=row[5],
        certificates=certs,
        required_certificates=required,
        missing_certificates=[t for t in required if t not in held],
    )


def worker_missing_certificates(
    conn: psycopg.Connection, project_id: str, event_id: uuid.UUID, zone: str, on: date
) -> tuple[str, list[str]] | None:
    """(worker, certificates required in ``zone`` they lack or hold expired) for the worker
    recognised on ``event_id``; None: no enrolled worker known for the event."""
    worker_id = worker_of_event(conn, project_id, event_id)
    if worker_id is None:
        return None
    w = worker_of(conn, project_id, worker_id, [zone], on)
    return (w.id, w.missing_certificates) if w is not None else None


def _enterprise_factors(enterprises: list[EnterpriseInfo]) -> list[Factor]:
    out: list[Factor] = []
    budget = MAX_ENTERPRISE_POINTS
    for e in enterprises:
        who = f"{e.role.replace('_', ' ')} {e.name} ({e.uscc})"
        if e.blacklisted:
            points = min(BLACKLISTED_POINTS, budget)
            out.append(Factor("enterprise_blacklisted", e.uscc, points, f"{who} is blacklisted"))
        elif e.low_credit:
            points = min(LOW_CREDIT_POINTS, budget)
            out.append(
                Factor(
                    "enterprise_low_credit",
                    e.uscc,
                    points,
                    f"{who} has low credit: score {e.credit_score:g}, grade {e.credit_grade}",
                )
            )
        else:
            continue
        budget -= points
    return out


def correlate(
    conn: psycopg.Connection, s: Subject, *, low_credit_score: float = 60.0
) -> Correlated:
    """Look everything up for ``s``; never raises except for a lost connection."""
    errors: list[str] = []
    factors: list[Factor] = []
    level = s.level

    permit = _part(conn, "permit", errors, lambda: permit_of(conn, s.project_id, s.on))
    unpermitted = permit is not None and permit.state != "valid"
    if permit is not None and unpermitted:
        what = "permit missing" if permit.state == "missing" else f"permit {permit.number} is "
        if permit.state != "missing":
            what += permit.state
            if permit.state == "expired" and permit.expires_on is not None:
                what += f" (expired on {permit.expires_on.isoformat()})"
        factors.append(
            Factor(
                "unpermitted_work", permit.state, UNPERMITTED_POINTS, f"unpermitted work: {what}"
            )
        )
        if level is Level.WARNING:
            # Work without a valid permit is itself a violation: a warning on it is an alarm.
            level = Level.ALARM
            factors.append(
                Factor(
                    LEVEL_RAISED,
                    Level.ALARM.value,
                    LEVEL_POINTS[Level.ALARM] - LEVEL_POINTS[Level.WARNING],
                    "raised from 预警 warning to 报警 alarm: unpermitted work",
                )
            )

    # resolve() reports a missing model or placement in its status; a failure here is a bug
    # or odd model data, and the rest of the correlation still counts.
    bim = _part(conn, "bim", errors, lambda: resolve(conn, s.project_id, s.device_id, s.zone))

    enterprises = _part(
        conn, "enterprises", errors, lambda: enterprises_of(conn, s.project_id, low_credit_score)
    )
    factors.extend(_enterprise_factors(enterprises or []))

    worker_id, event_id = s.worker_id, s.event_id
    if worker_id is None and event_id is not None:
        worker_id = _part(
            conn, "worker_lookup", errors, lambda: worker_of_event(conn, s.project_id, event_id)
        )
    worker: WorkerInfo | None = None
    if worker_id is not None:
        zones = sorted({z for z in (s.zone, bim.zone if bim else None) if z})
        worker = _part(
            conn,
            "worker",
            errors,
            lambda: worker_of(conn, s.project_id, worker_id or "", zones, s.on),
        )
        if worker is not None and worker.missing_certificates:
            # It is also its own alert (the engine's worker_certificate rule); on this one it
            # weighs on the priority, as who did it matters for how urgent it is.
            factors.append(
                Factor(
                    "certificate_missing",
                    worker.missing_certificates,
                    MISSING_CERTIFICATE_POINTS,
                    f"worker {worker.id} lacks a valid "
                    + ", ".join(worker.missing_certificates)
                    + f" required in zone {', '.join(zones)}",
                )
            )

    correlation = Correlation(
        permit=permit,
        unpermitted_work=unpermitted,
        bim=bim,
        enterprises=enterprises or [],
        worker_id=worker_id,
        worker=worker,
        factors=[f.to_json() for f in factors],
        errors=errors,
    )
    return Correlated(correlation, level, tuple(factors))


def carried_factors(correlation: dict[str, Any] | None) -> list[Factor]:
    """The correlation factors that still hold once the rule itself escalated to alarm:
    all but the level raise (the rule's own level factor now says alarm). Read back from the
    stored snapshot defensively: an odd entry is dropped rather than failing the escalation."""
    out: list[Factor] = []
    for f in (correlation or {}).get("factors") or []:
        if not isinstance(f, dict) or f.get("factor") in (None, LEVEL_RAISED):
            continue
        points = f.get("points")
        out.append(
            Factor(
                str(f["factor"]),
                f.get("value"),
                points if isinstance(points, int) else 0,
                str(f.get("note") or ""),
            )
        )
    return out


def failed(level: Level, worker_id: str | None, exc: BaseException) -> Correlated:
    """What is stored when correlation as a whole failed: what is known, and why."""
    return Correlated(
        Correlation(worker_id=worker_id, errors=[f"correlation: {type(exc).__name__}: {exc}"]),
        level,
        (),
    )


def refresh(
    conn: psycopg.Connection, alert_id: uuid.UUID, low_credit_score: float, tz: str
) -> bool:
    """Correlate the alert again with what the registries say now and store it.

    The factors correlation added before are replaced by the new ones (the rule's own stay);
    the level is the rule's level, raised again only if the new correlation raises it; the
    priority is the sum of the factors, as the engine computes it."""
    with conn.transaction():
        row = conn.execute(
            "SELECT project_id, device_id, rule, target, zone, severity, escalated_at, factors,"
            " correlation, worker_id, event_id, (created_at AT TIME ZONE %s)::date"
            " FROM alerts WHERE id = %s FOR UPDATE",
            (tz, alert_id),
        ).fetchone()
        if row is None:
            return False
        project, device, rule, target, zone, severity, escalated, factors, old, worker, ev, on = row
        old_factors = list((old or {}).get("factors") or [])
        raised = any(f.get("factor") == LEVEL_RAISED for f in old_factors)
        base = Level.WARNING if raised and escalated is None else Level(severity)
        own = [f for f in factors or [] if f not in old_factors]
        c = correlate(
            conn,
            Subject(
                project_id=project,
                device_id=device,
                rule=rule,
                target=target,
                zone=zone,
                level=base,
                worker_id=worker,
                event_id=ev,
                on=on,
            ),
            low_credit_score=low_credit_score,
        )
        new_factors = own + [f.to_json() for f in c.factors]
        priority = max(0, min(100, sum(int(f.get("points") or 0) for f in new_factors)))
        conn.execute(
            "UPDATE alerts SET correlation = %s, unpermitted_work = %s, worker_id = %s,"
            " factors = %s, priority = %s, severity = %s, updated_at = now() WHERE id = %s",
            (
                Jsonb(c.correlation.model_dump(mode="json")),
                c.correlation.unpermitted_work,
                c.correlation.worker_id,
                Jsonb(new_factors),
                priority,
                c.level.value,
                alert_id,
            ),
        )
    return True
