"""Credit of enterprises and persons: records, blacklist, score, grade (信用评价).

Chengdu and Beijing practice (DESIGN.md): confirmed violations go into the credit record of
the enterprise and of the project manager; commendations add; old records count less. The
records (``credit_records``) and blacklist entries (``credit_blacklist``) are the truth; the
score, grade and blacklist flag on ``enterprises`` and ``persons`` are computed from them by
:func:`recompute`, which correlation then reads. Recomputing is idempotent: the same records at
the same moment give the same result, and :func:`explain` shows which records made it.

The rule (hub practice; the thresholds are settings):

* score = 100 − Σ weighted violation points + Σ weighted commendation points, clamped to
  0..100 and rounded to 0.1 (the column's precision);
* a record's weight falls linearly with its age, from 1 when it occurred to 0 after
  ``SMARTSITE_CREDIT_DECAY_DAYS`` (730, two years): weight = max(0, 1 − age / decay). A record
  dated in the future (clock skew) counts fully; one at or past the decay span counts 0 but
  stays listed, so an explanation shows why an old violation no longer weighs;
* grade: A from ``SMARTSITE_CREDIT_GRADE_A`` (90), B from ``_B`` (75), C from ``_C`` (60),
  D below; a blacklisted subject is D whatever its score (a blacklist is the worst standing
  in every local scheme), so correlation's "grade C/D is low credit" holds for it too;
* blacklisted: an entry with starts_at <= now < ends_at (ends_at NULL: open-ended).

Closing an alert (verified by a regulator, :func:`alerts.lifecycle.close`) is a confirmed
violation: :func:`on_alert_closed` records it, in the close's transaction, for the project's
general contractor(s) and its project manager(s) (``project_workers.role = 'project_manager'``,
still on the project), then recomputes them. Subcontractors are not charged: an alert names a
device and a place, not which subcontractor caused it, and under the general-contractor
responsibility system (总包负责制, 建筑法 art. 29) the general contractor answers for the
site; a regulator who finds a subcontractor at fault records that by hand
(``smartsite credit record``). The source is ``alert:<id>``, unique per subject, so a
reopened alert closed again is not counted twice; a reopen does not withdraw the record
(the violation happened; the reopen only rejected its rectification).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from smartsite.db.registry import Ident, Uscc
from smartsite.settings import Settings, get_settings

BASE_SCORE = 100.0
MAX_SCORE = 100.0
Kind = Literal["violation", "commendation"]
SubjectKind = Literal["enterprise", "person"]

# Points of a confirmed alert, by category and level (hub practice, no standard gives them).
# Safety hazards (crane overload, pit movement, unsafe behaviour, uncertified work) weigh most:
# the local schemes deduct most for 安全生产 items; environmental limits (noise, dust) are
# 文明施工 items and weigh less; a silent monitor is a lapse of the monitoring duty itself.
ALERT_POINTS: dict[str, dict[str, float]] = {
    "safety": {"warning": 2.0, "alarm": 5.0},
    "environment": {"warning": 1.0, "alarm": 3.0},
    "monitoring": {"warning": 1.0, "alarm": 2.0},
}
ENVIRONMENT_RULES = frozenset({"noise", "pm10"})
MONITORING_RULES = frozenset({"device_silent"})
PROJECT_MANAGER_ROLE = "project_manager"


def alert_category(rule: str) -> str:
    """The credit category of an alert rule: anything not environmental or a silent monitor
    is a safety matter (custom rules included: they are set up for hazards)."""
    if rule in ENVIRONMENT_RULES:
        return "environment"
    if rule in MONITORING_RULES:
        return "monitoring"
    return "safety"


@dataclass(frozen=True, slots=True)
class Policy:
    """The scoring rule's parameters (from the settings)."""

    decay_days: float = 730.0
    grade_a: float = 90.0
    grade_b: float = 75.0
    grade_c: float = 60.0

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(s.credit_decay_days, s.credit_grade_a, s.credit_grade_b, s.credit_grade_c)

    def describe(self) -> str:
        return (
            f"score = {BASE_SCORE:g} - violations + commendations, each weighted "
            f"max(0, 1 - age / {self.decay_days:g} days), clamped to 0..{MAX_SCORE:g}; "
            f"grade A >= {self.grade_a:g}, B >= {self.grade_b:g}, C >= {self.grade_c:g}, "
            "else D; blacklisted: D"
        )


class CreditError(Exception):
    """A credit change that cannot be made; the message says why."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uscc: Uscc | None = Field(None, description="The enterprise (统一社会信用代码).")
    person_id: Ident | None = Field(None, description="Or the person (registry id).")

    @model_validator(mode="after")
    def _one_subject(self) -> _In:
        if (self.uscc is None) == (self.person_id is None):
            raise ValueError("give exactly one of uscc or person_id")
        return self


def _aware(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is None:
        raise ValueError("needs a time zone")
    return v


class RecordFields(_In):
    """A credit record as a client states it (the API body); who records it comes from the
    caller's identity, see :class:`RecordIn`."""

    kind: Kind = Field(description="violation (deducts) or commendation (adds).")
    category: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="E.g. safety.")
    severity: str = Field("", max_length=32, description="E.g. warning or alarm.")
    points: float = Field(gt=0, le=100, description="Full points, before decay.")
    reason: str = Field(min_length=1, max_length=2000)
    source: str | None = Field(
        None, max_length=200, description="Where it comes from (alert:<id>, inspection:...)."
    )
    occurred_at: datetime

    _tz = field_validator("occurred_at")(_aware)

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a reason is needed")
        return v


class RecordIn(RecordFields):
    """A credit record to add."""

    recorded_by: str = Field(min_length=1, max_length=100)


class BlacklistFields(_In):
    """A blacklist entry as a client states it (the API body); see :class:`BlacklistIn`."""

    starts_at: datetime
    ends_at: datetime | None = Field(None, description="None: until lifted.")
    reason: str = Field(min_length=1, max_length=2000)

    _tz = field_validator("starts_at", "ends_at")(_aware)

    @model_validator(mode="after")
    def _order(self) -> BlacklistFields:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("the blacklist entry must end after it starts")
        if not self.reason.strip():
            raise ValueError("a reason is needed")
        return self


class BlacklistIn(BlacklistFields):
    """A blacklist entry to add."""

    recorded_by: str = Field(min_length=1, max_length=100)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class WeightedRecord(_Out):
    """A record as it weighs now."""

    id: int
    kind: Kind
    category: str
    severity: str
    points: float = Field(description="Full points, as recorded.")
    reason: str
    source: str | None
    occurred_at: datetime
    recorded_by: str
    age_days: float
    weight: float = Field(description="1 when it occurred, 0 after the decay span.")
    weighted_points: float = Field(description="Signed: negative for a violation.")


class BlacklistEntry(_Out):
    id: int
    starts_at: datetime
    ends_at: datetime | None
    reason: str
    recorded_by: str
    active: bool


class CreditScore(_Out):
    """A subject's score and what made it."""

    subject: SubjectKind
    id: str
    as_of: datetime
    score: float
    grade: str
    blacklisted: bool
    rule: str = Field(description="The scoring rule, in words.")
    records: list[WeightedRecord] = Field(description="Newest first, each with its weight now.")
    blacklist: list[BlacklistEntry]


# --- the math (pure) ---------------------------------------------------------------------------


def weight(age: timedelta, decay_days: float) -> float:
    """Linear decay: 1 at age 0 (and for future dates), 0 at and after ``decay_days``."""
    fraction = age.total_seconds() / (decay_days * 86400.0)
    return min(1.0, max(0.0, 1.0 - fraction))


def grade_of(score: float, blacklisted: bool, policy: Policy) -> str:
    if blacklisted:
        return "D"
    if score >= policy.grade_a:
        return "A"
    if score >= policy.grade_b:
        return "B"
    if score >= policy.grade_c:
        return "C"
    return "D"


def _active(starts_at: datetime, ends_at: datetime | None, now: datetime) -> bool:
    return starts_at <= now and (ends_at is None or now < ends_at)


_RECORD_COLS = (
    "id, kind, category, severity, points::float8, reason, source, occurred_at, recorded_by"
)
_BLACKLIST_COLS = "id, starts_at, ends_at, reason, recorded_by"
RecordRow = tuple[int, str, str, str, float, str, str | None, datetime, str]
BlacklistRow = tuple[int, datetime, datetime | None, str, str]


def compute(
    subject: SubjectKind,
    subject_id: str,
    records: list[RecordRow],
    entries: list[BlacklistRow],
    now: datetime,
    policy: Policy,
) -> CreditScore:
    """The score of one subject from its record and blacklist rows (no database)."""
    weighted: list[WeightedRecord] = []
    total = BASE_SCORE
    for rid, kind, category, severity, points, reason, source, occurred_at, by in records:
        age = now - occurred_at
        w = weight(age, policy.decay_days)
        signed = points * w * (-1 if kind == "violation" else 1)
        total += signed
        weighted.append(
            WeightedRecord(
                id=rid,
                kind=kind,  # type: ignore[arg-type]
                category=category,
                severity=severity,
                points=points,
                reason=reason,
                source=source,
                occurred_at=occurred_at,
                recorded_by=by,
                age_days=round(age.total_seconds() / 86400.0, 2),
                weight=round(w, 4),
                weighted_points=round(signed, 2),
            )
        )
    weighted.sort(key=lambda r: (r.occurred_at, r.id), reverse=True)
    score = round(min(MAX_SCORE, max(0.0, total)), 1)
    blacklist = [
        BlacklistEntry(
            id=bid,
            starts_at=start,
            ends_at=end,
            reason=reason,
            recorded_by=by,
            active=_active(start, end, now),
        )
        for bid, start, end, reason, by in entries
    ]
    black = any(e.active for e in blacklist)
    return CreditScore(
        subject=subject,
        id=subject_id,
        as_of=now,
        score=score,
        grade=grade_of(score, black, policy),
        blacklisted=black,
        rule=policy.describe(),
        records=weighted,
        blacklist=blacklist,
    )


# --- the database ------------------------------------------------------------------------------


def _subject(uscc: str | None, person_id: str | None) -> tuple[SubjectKind, str, str]:
    """(kind, id, column) of exactly one subject."""
    if uscc is not None and person_id is None:
        return "enterprise", uscc, "uscc"
    if person_id is not None and uscc is None:
        return "person", person_id, "person_id"
    raise CreditError("give exactly one of uscc or person_id")


def _exists(conn: psycopg.Connection, kind: SubjectKind, sid: str) -> None:
    sql = (
        "SELECT 1 FROM enterprises WHERE uscc = %s"
        if kind == "enterprise"
        else "SELECT 1 FROM persons WHERE id = %s"
    )
    if conn.execute(sql, (sid,)).fetchone() is None:
        raise CreditError(f"no {kind} {sid}")


def add_record(conn: psycopg.Connection, rec: RecordIn) -> int | None:
    """Store a record; return its id, or None when its source is already recorded for the
    subject (so replays are harmless). Does not recompute: call :func:`recompute`."""
    kind, sid, _ = _subject(rec.uscc, rec.person_id)
    _exists(conn, kind, sid)
    row = conn.execute(
        "INSERT INTO credit_records (uscc, person_id, kind, category, severity, points, reason, "
        "source, occurred_at, recorded_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING id",
        (
            rec.uscc,
            rec.person_id,
            rec.kind,
            rec.category,
            rec.severity,
            rec.points,
            rec.reason,
            rec.source,
            rec.occurred_at,
            rec.recorded_by,
        ),
    ).fetchone()
    return None if row is None else int(row[0])


def add_blacklist(conn: psycopg.Connection, entry: BlacklistIn) -> int:
    kind, sid, _ = _subject(entry.uscc, entry.person_id)
    _exists(conn, kind, sid)
    row = conn.execute(
        "INSERT INTO credit_blacklist (uscc, person_id, starts_at, ends_at, reason, recorded_by) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (
            entry.uscc,
            entry.person_id,
            entry.starts_at,
            entry.ends_at,
            entry.reason,
            entry.recorded_by,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


class CreditConflictError(CreditError):
    """A change that the current state rules out (e.g. lifting an entry that has ended)."""


class BlacklistChange(_Out):
    """One change to a blacklist entry after it was recorded."""

    id: int
    at: datetime
    changed_by: str
    action: Literal["lift", "edit"]
    ends_at_before: datetime | None
    ends_at_after: datetime | None
    reason_before: str
    reason_after: str
    note: str


def blacklist_subject(conn: psycopg.Connection, entry_id: int) -> tuple[SubjectKind, str] | None:
    """(kind, id) of the subject of a blacklist entry; None: no such entry."""
    row = conn.execute(
        "SELECT uscc, person_id FROM credit_blacklist WHERE id = %s", (entry_id,)
    ).fetchone()
    if row is None:
        return None
    kind, sid, _ = _subject(row[0].strip() if row[0] else None, row[1])
    return kind, sid


def blacklist_changes(conn: psycopg.Connection, entry_id: int) -> list[BlacklistChange]:
    rows = conn.execute(
        "SELECT id, at, changed_by, action, ends_at_before, ends_at_after, reason_before, "
        "reason_after, note FROM credit_blacklist_changes WHERE entry_id = %s ORDER BY at, id",
        (entry_id,),
    ).fetchall()
    names = list(BlacklistChange.model_fields)
    return [BlacklistChange(**dict(zip(names, r, strict=True))) for r in rows]


def edit_blacklist(
    conn: psycopg.Connection,
    entry_id: int,
    *,
    by: str,
    note: str,
    lift: bool = False,
    ends_at: datetime | EllipsisType | None = ...,
    reason: str | None = None,
    now: datetime | None = None,
    policy: Policy | None = None,
) -> CreditScore:
    """Lift a blacklist entry now (``lift``: its end becomes ``now``) or correct its end
    (``ends_at``; None: open-ended; ``...``: unchanged) or reason, with a note saying why;
    keep the change in ``credit_blacklist_changes`` and recompute the subject. Returns the
    subject's new score. Raises :class:`CreditError` (bad change) or :class:`CreditConflictError`
    (the entry has already ended / has not started when lifting)."""
    now = now or datetime.now(UTC)
    if not note.strip():
        raise CreditError("a note is needed: say why the entry changes")
    if reason is not None and not reason.strip():
        raise CreditError("a reason cannot be blank")
    if lift and ends_at is not ...:
        raise CreditError("either lift the entry or give a new end, not both")
    with conn.transaction():
        row = conn.execute(
            "SELECT uscc, person_id, starts_at, ends_at, reason FROM credit_blacklist "
            "WHERE id = %s FOR UPDATE",
            (entry_id,),
        ).fetchone()
        if row is None:
            raise CreditError(f"no blacklist entry {entry_id}")
        uscc, person_id, starts_at, old_end, old_reason = row
        new_end: datetime | None = old_end
        if lift:
            if not _active(starts_at, old_end, now):
                if starts_at > now:
                    raise CreditConflictError(
                        f"blacklist entry {entry_id} starts at {starts_at.isoformat()}: it "
                        "cannot be lifted before it starts (correct its dates instead)"
                    )
                raise CreditConflictError(f"blacklist entry {entry_id} has already ended")
            new_end = now
        elif not isinstance(ends_at, EllipsisType):
            if ends_at is not None and ends_at.tzinfo is None:
                raise CreditError("ends_at needs a time zone")
            if ends_at is not None and ends_at <= starts_at:
                raise CreditError("the blacklist entry must end after it starts")
            new_end = ends_at
        new_reason = old_reason if reason is None else reason
        if new_end == old_end and new_reason == old_reason:
            raise CreditError("nothing to change")
        conn.execute(
            "UPDATE credit_blacklist SET ends_at = %s, reason = %s WHERE id = %s",
            (new_end, new_reason, entry_id),
        )
        conn.execute(
            "INSERT INTO credit_blacklist_changes (entry_id, at, changed_by, action, "
            "ends_at_before, ends_at_after, reason_before, reason_after, note) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                entry_id,
                now,
                by,
                "lift" if lift else "edit",
                old_end,
                new_end,
                old_reason,
                new_reason,
                note.strip(),
            ),
        )
        uscc = uscc.strip() if uscc else None
        (score,) = recompute(conn, uscc=uscc, person_id=person_id, now=now, policy=policy)
    return score


def explain(
    conn: psycopg.Connection,
    *,
    uscc: str | None = None,
    person_id: str | None = None,
    now: datetime | None = None,
    policy: Policy | None = None,
) -> CreditScore:
    """The score as the records give it now, with the records; stores nothing."""
    now = now or datetime.now(UTC)
    policy = policy or Policy.from_settings(get_settings())
    kind, sid, col = _subject(uscc, person_id)
    _exists(conn, kind, sid)
    records = conn.execute(
        f"SELECT {_RECORD_COLS} FROM credit_records WHERE {col} = %s", (sid,)
    ).fetchall()
    entries = conn.execute(
        f"SELECT {_BLACKLIST_COLS} FROM credit_blacklist WHERE {col} = %s ORDER BY starts_at, id",
        (sid,),
    ).fetchall()
    return compute(kind, sid, records, entries, now, policy)  # type: ignore[arg-type]


def _store(conn: psycopg.Connection, s: CreditScore) -> None:
    table, key = ("enterprises", "uscc") if s.subject == "enterprise" else ("persons", "id")
    conn.execute(
        f"UPDATE {table} SET credit_score = %s, credit_grade = %s, blacklisted = %s, "
        f"credit_computed_at = %s WHERE {key} = %s",
        (s.score, s.grade, s.blacklisted, s.as_of, s.id),
    )


def recompute(
    conn: psycopg.Connection,
    *,
    uscc: str | None = None,
    person_id: str | None = None,
    now: datetime | None = None,
    policy: Policy | None = None,
) -> list[CreditScore]:
    """Compute and store the score of one subject, or (neither given) of every enterprise and
    person: a subject without records gets the base score, so a deleted record is undone."""
    now = now or datetime.now(UTC)
    policy = policy or Policy.from_settings(get_settings())
    if uscc is not None or person_id is not None:
        scores = [explain(conn, uscc=uscc, person_id=person_id, now=now, policy=policy)]
    else:
        scores = [
            *_all(conn, "enterprise", "enterprises", "uscc", "uscc", now, policy),
            *_all(conn, "person", "persons", "id", "person_id", now, policy),
        ]
    with conn.transaction():
        for s in scores:
            _store(conn, s)
    return scores


def _all(
    conn: psycopg.Connection,
    kind: SubjectKind,
    table: str,
    key: str,
    col: str,
    now: datetime,
    policy: Policy,
) -> list[CreditScore]:
    records: dict[str, list[RecordRow]] = {}
    for r in conn.execute(
        f"SELECT {col}, {_RECORD_COLS} FROM credit_records WHERE {col} IS NOT NULL"
    ).fetchall():
        records.setdefault(r[0].strip(), []).append(r[1:])
    entries: dict[str, list[BlacklistRow]] = {}
    for r in conn.execute(
        f"SELECT {col}, {_BLACKLIST_COLS} FROM credit_blacklist WHERE {col} IS NOT NULL "
        "ORDER BY starts_at, id"
    ).fetchall():
        entries.setdefault(r[0].strip(), []).append(r[1:])
    ids = [r[0] for r in conn.execute(f"SELECT {key} FROM {table} ORDER BY {key}").fetchall()]
    return [
        compute(kind, sid, records.get(sid, []), entries.get(sid, []), now, policy) for sid in ids
    ]


def on_alert_closed(
    conn: psycopg.Connection,
    alert_id: uuid.UUID,
    *,
    by: str,
    now: datetime,
    policy: Policy | None = None,
) -> list[int]:
    """Record the confirmed violation of a closed alert against the project's general
    contractor(s) and project manager(s), once per subject, and recompute them. Runs in the
    caller's transaction (the close), so the close and its credit effect commit together.
    Returns the ids of the records added (none when the alert was closed before)."""
    row = conn.execute(
        "SELECT project_id, rule, severity, title, created_at FROM alerts WHERE id = %s",
        (alert_id,),
    ).fetchone()
    if row is None:
        return []
    project_id, rule, severity, title, created_at = row
    category = alert_category(rule)
    points = ALERT_POINTS[category][severity]
    reason = f"verified alert {title or rule} ({severity}) on project {project_id}"
    source = f"alert:{alert_id}"
    usccs = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT uscc FROM project_enterprises "
            "WHERE project_id = %s AND role = 'general_contractor' ORDER BY uscc",
            (project_id,),
        ).fetchall()
    ]
    managers = [
        r[0]
        for r in conn.execute(
            "SELECT person_id FROM project_workers WHERE project_id = %s AND role = %s "
            "AND (left_on IS NULL OR left_on >= %s::date) ORDER BY person_id",
            (project_id, PROJECT_MANAGER_ROLE, created_at),
        ).fetchall()
    ]
    added: list[int] = []
    subjects = [(u, None) for u in usccs] + [(None, p) for p in managers]
    for uscc, person_id in subjects:
        rid = add_record(
            conn,
            RecordIn(
                uscc=uscc,
                person_id=person_id,
                kind="violation",
                category=category,
                severity=severity,
                points=points,
                reason=reason,
                source=source,
                occurred_at=created_at,  # when the violation happened, not when it was verified
                recorded_by=by,
            ),
        )
        if rid is not None:
            added.append(rid)
            recompute(conn, uscc=uscc, person_id=person_id, now=now, policy=policy)
    return added
