"""Credit of enterprises and persons: the score with the records that make it, and (admins and
regulators) new records, blacklist entries and lifting or correcting an entry.

The rules live in :mod:`alerts.credit`; every change here recomputes its subject at once,
and the hub recomputes everyone on a schedule (:mod:`alerts.credit_schedule`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts import credit
from alerts.credit import (
    BlacklistChange,
    BlacklistEntry,
    BlacklistFields,
    BlacklistIn,
    CreditScore,
    Policy,
    RecordFields,
    RecordIn,
)
from server.audit import personal_read
from server.deps import Conn, Current, SettingsDep, require
from server.errors import ApiError, not_found
from server.principal import Principal
from server.routes.registry import enterprise_visible, person_visible

router = APIRouter(tags=["credit"])

Writer = Annotated[Principal, Depends(require("admin", "regulator"))]


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid", message)


# --- reads ---------------------------------------------------------------------------------------


@router.get("/api/enterprises/{uscc}/credit")
def get_enterprise_credit(uscc: str, p: Current, conn: Conn, settings: SettingsDep) -> CreditScore:
    """The enterprise's score and grade as its records give them now, each record with its
    weight, and its blacklist entries (an enterprise user: only their own)."""
    uscc = uscc.upper()
    if not enterprise_visible(conn, p, uscc):
        raise not_found("enterprise")
    return credit.explain(conn, uscc=uscc, policy=Policy.from_settings(settings))


@router.get("/api/workers/{person_id}/credit")
def get_worker_credit(
    person_id: str, request: Request, p: Current, conn: Conn, settings: SettingsDep
) -> CreditScore:
    """A person's score with the records that make it (personal data: audited)."""
    if not person_visible(conn, p, person_id):
        raise not_found("worker")
    score = credit.explain(conn, person_id=person_id, policy=Policy.from_settings(settings))
    personal_read(conn, p, request, "worker_credit", 1)
    return score


# --- writes --------------------------------------------------------------------------------------


def _check_subject(
    conn: psycopg.Connection, p: Principal, uscc: str | None, person_id: str | None
) -> None:
    """The subject must exist in the writer's scope (else it reads as absent: 422)."""
    if uscc is not None and not enterprise_visible(conn, p, uscc):
        raise _invalid(f"no enterprise {uscc} (unknown or outside your scope)")
    if person_id is not None and not person_visible(conn, p, person_id):
        raise _invalid(f"no person {person_id} (unknown or outside your scope)")


class RecordCreated(BaseModel):
    id: int = Field(description="The new record's id.")
    score: CreditScore = Field(description="The subject's score with it.")


class BlacklistCreated(BaseModel):
    id: int = Field(description="The new entry's id.")
    score: CreditScore


@router.post("/api/credit/records", status_code=201)
def add_credit_record(
    body: RecordFields, p: Writer, conn: Conn, settings: SettingsDep
) -> RecordCreated:
    """Add a violation or commendation to an enterprise's or a person's credit (recorded by
    you) and recompute the subject. 409 when its source is already recorded for it."""
    _check_subject(conn, p, body.uscc, body.person_id)
    rec = RecordIn(**body.model_dump(), recorded_by=p.name)
    policy = Policy.from_settings(settings)
    with conn.transaction():
        try:
            rid = credit.add_record(conn, rec)
        except credit.CreditError as exc:
            raise _invalid(str(exc)) from None
        if rid is None:
            raise ApiError(
                409, "conflict", f"source {rec.source!r} is already recorded for this subject"
            )
        (score,) = credit.recompute(conn, uscc=rec.uscc, person_id=rec.person_id, policy=policy)
    return RecordCreated(id=rid, score=score)


@router.post("/api/credit/blacklist", status_code=201)
def add_credit_blacklist(
    body: BlacklistFields, p: Writer, conn: Conn, settings: SettingsDep
) -> BlacklistCreated:
    """Blacklist an enterprise or a person from ``starts_at`` (until ``ends_at``, or until
    lifted) and recompute them: a blacklisted subject is graded D."""
    _check_subject(conn, p, body.uscc, body.person_id)
    entry = BlacklistIn(**body.model_dump(), recorded_by=p.name)
    policy = Policy.from_settings(settings)
    with conn.transaction():
        try:
            eid = credit.add_blacklist(conn, entry)
        except credit.CreditError as exc:
            raise _invalid(str(exc)) from None
        (score,) = credit.recompute(conn, uscc=entry.uscc, person_id=entry.person_id, policy=policy)
    return BlacklistCreated(id=eid, score=score)


class BlacklistPatch(BaseModel):
    """Lift the entry now, or correct its end or reason; always with a note saying why."""

    model_config = ConfigDict(extra="forbid")

    lift: bool = Field(False, description="End the entry now.")
    ends_at: datetime | None = Field(
        None, description="A corrected end (null: open-ended); not with lift."
    )
    reason: str | None = Field(None, min_length=1, max_length=2000)
    note: str = Field(min_length=1, max_length=2000, description="Why it changes.")

    @field_validator("ends_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone")
        return v

    @model_validator(mode="after")
    def _something(self) -> BlacklistPatch:
        if not self.note.strip():
            raise ValueError("a note is needed: say why the entry changes")
        if self.reason is not None and not self.reason.strip():
            raise ValueError("a reason cannot be blank")
        if self.lift and "ends_at" in self.model_fields_set:
            raise ValueError("either lift the entry or give a new end, not both")
        if not self.lift and not {"ends_at", "reason"} & self.model_fields_set:
            raise ValueError("nothing to change: give lift, ends_at or reason")
        return self


class BlacklistEdited(BaseModel):
    entry: BlacklistEntry
    changes: list[BlacklistChange] = Field(description="Every change to it, oldest first.")
    score: CreditScore = Field(description="The subject's score after the change.")


@router.patch("/api/credit/blacklist/{entry_id}")
def edit_credit_blacklist(
    entry_id: int, body: BlacklistPatch, p: Writer, conn: Conn, settings: SettingsDep
) -> BlacklistEdited:
    """Lift a blacklist entry (its end becomes now) or correct its end or reason, with a
    note; the change is kept and the subject recomputed."""
    subject = credit.blacklist_subject(conn, entry_id)
    if subject is None:
        raise not_found("blacklist entry")
    kind, sid = subject
    visible = enterprise_visible if kind == "enterprise" else person_visible
    if not visible(conn, p, sid):
        raise not_found("blacklist entry")
    try:
        score = credit.edit_blacklist(
            conn,
            entry_id,
            by=p.name,
            note=body.note,
            lift=body.lift,
            ends_at=body.ends_at if "ends_at" in body.model_fields_set else ...,
            reason=body.reason,
            policy=Policy.from_settings(settings),
        )
    except credit.CreditConflictError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except credit.CreditError as exc:
        raise _invalid(str(exc)) from None
    entry = next(e for e in score.blacklist if e.id == entry_id)
    return BlacklistEdited(
        entry=entry, changes=credit.blacklist_changes(conn, entry_id), score=score
    )
