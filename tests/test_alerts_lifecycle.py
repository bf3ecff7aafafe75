"""The closed loop on the real database: every legal transition recorded with who and when,
every illegal one refused naming the current status and the allowed next ones; overdue
rectifications."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import count

from alerts import lifecycle as lc
from alerts.lifecycle import NEXT, Actor, Status
from edge.simulator import register_site

PROJECT = "P-LIFE"
DEVICE = f"{PROJECT}-towercrane-001"
OFFICER = Actor(name="wang.officer", role="officer")
REGULATOR = Actor(name="li.regulator", role="regulator")
ADMIN = Actor(name="root", role="admin")


def new_alert(db, status: Status = Status.OPEN, project: str = PROJECT) -> uuid.UUID:  # type: ignore[no-untyped-def]
    alert_id = uuid.uuid4()
    later = datetime.now(UTC) + timedelta(days=1)
    db.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity, "
        "status, target, title, responsible, deadline) "
        "VALUES (%s, now(), %s, %s, 'hub', 'crane_moment', 'alarm', %s, %s, 'moment', %s, %s)",
        (
            alert_id,
            project,
            DEVICE,
            status.value,
            f"t{alert_id.hex[:6]}",
            "zhang" if status is Status.RECTIFYING else None,
            later if status is Status.RECTIFYING else None,
        ),
    )
    return alert_id


@pytest.fixture
def site(db, pg_url):  # type: ignore[no-untyped-def]
    register_site(pg_url, PROJECT, 1)
    return db


def test_the_whole_loop_is_recorded(site) -> None:  # type: ignore[no-untyped-def]
    db = site
    a = new_alert(db)
    deadline = datetime.now(UTC) + timedelta(hours=4)
    assert lc.acknowledge(db, a, by=OFFICER, note="on my way") is Status.OPEN
    lc.assign_rectification(db, a, by=OFFICER, responsible="zhang (crane crew)", deadline=deadline)
    lc.resolve(db, a, by=OFFICER, note="load reduced, limiter checked", evidence_id="ev-fix-1")
    lc.reopen(db, a, by=REGULATOR, note="photo shows the old limiter")
    lc.assign_rectification(db, a, by=OFFICER, responsible="zhang", deadline=deadline)
    lc.resolve(db, a, by=OFFICER, note="limiter replaced", evidence_id="ev-fix-2")
    lc.close(db, a, by=REGULATOR, note="verified on site")

    steps = lc.history(db, a)
    assert [(t.from_status, t.to_status) for t in steps] == [
        (Status.OPEN, Status.ACKNOWLEDGED),
        (Status.ACKNOWLEDGED, Status.RECTIFYING),
        (Status.RECTIFYING, Status.RESOLVED),
        (Status.RESOLVED, Status.REOPENED),
        (Status.REOPENED, Status.RECTIFYING),
        (Status.RECTIFYING, Status.RESOLVED),
        (Status.RESOLVED, Status.CLOSED),
    ]
    assert [(t.actor, t.actor_role) for t in steps][-1] == ("li.regulator", "regulator")
    assert steps[1].responsible == "zhang (crane crew)" and steps[1].deadline == deadline
    assert steps[2].evidence_id == "ev-fix-1" and steps[3].note == "photo shows the old limiter"
    assert all(t.at <= datetime.now(UTC) for t in steps)
    row = db.execute(
        "SELECT status, acknowledged_at IS NOT NULL, responsible, resolution_note, "
        "resolution_evidence_id, closed_at IS NOT NULL FROM alerts WHERE id = %s",
        (a,),
    ).fetchone()
    assert row == ("closed", True, "zhang", "limiter replaced", "ev-fix-2", True)
    # each transition is in the outbox for the notifiers
    assert count(db, "SELECT count(*) FROM alert_outbox WHERE alert_id = %s", a) == 7
    assert (
        count(
            db,
            "SELECT count(*) FROM alert_outbox WHERE audience = 'regulator' AND alert_id = %s",
            a,
        )
        == 3
    )  # resolved twice (to verify), reopened once


def test_closed_alert_can_be_reopened(site) -> None:  # type: ignore[no-untyped-def]
    a = new_alert(site, Status.RESOLVED)
    lc.close(site, a, by=REGULATOR)
    lc.reopen(site, a, by=ADMIN, note="violation found again at the spot check")
    assert site.execute("SELECT status, closed_at FROM alerts WHERE id = %s", (a,)).fetchone() == (
        "reopened",
        None,
    )


ILLEGAL = [
    (frm, to) for frm in Status for to in Status if to is not Status.OPEN and to not in NEXT[frm]
]


@pytest.mark.parametrize(("frm", "to"), ILLEGAL, ids=[f"{f.value}->{t.value}" for f, t in ILLEGAL])
def test_illegal_transitions_are_refused(site, frm: Status, to: Status) -> None:  # type: ignore[no-untyped-def]
    a = new_alert(site, frm)
    before = count(site, "SELECT count(*) FROM alert_transitions")
    with pytest.raises(lc.IllegalTransitionError) as err:
        lc.transition(
            site,
            a,
            to,
            by=ADMIN,
            note="n",
            responsible="r",
            deadline=datetime.now(UTC) + timedelta(days=1),
            evidence_id="ev-1",
        )
    assert err.value.current is frm and err.value.allowed == NEXT[frm]
    allowed = ", ".join(s.value for s in NEXT[frm])
    assert str(err.value) == f"alert {a} is {frm.value}: it can go to {allowed}, not {to.value}"
    assert site.execute("SELECT status FROM alerts WHERE id = %s", (a,)).fetchone() == (frm.value,)
    assert count(site, "SELECT count(*) FROM alert_transitions") == before


def test_nothing_goes_back_to_open(site) -> None:  # type: ignore[no-untyped-def]
    a = new_alert(site, Status.ACKNOWLEDGED)
    with pytest.raises(lc.NotPermittedError, match="cannot move an alert to open"):
        lc.transition(site, a, Status.OPEN, by=ADMIN)


@pytest.mark.parametrize(
    ("status", "to", "actor"),
    [
        (Status.RESOLVED, Status.CLOSED, OFFICER),  # verifying is the regulator's
        (Status.RESOLVED, Status.REOPENED, OFFICER),
        (Status.RECTIFYING, Status.RESOLVED, REGULATOR),  # the site reports its own fix
        (Status.OPEN, Status.ACKNOWLEDGED, Actor(name="x", role="data_sharing")),
    ],
)
def test_roles(site, status: Status, to: Status, actor: Actor) -> None:  # type: ignore[no-untyped-def]
    a = new_alert(site, status)
    with pytest.raises(lc.NotPermittedError, match=f"a {actor.role} cannot move"):
        lc.transition(site, a, to, by=actor, note="n", evidence_id="ev-1")


@pytest.mark.parametrize(
    ("status", "to", "details", "message"),
    [
        (Status.ACKNOWLEDGED, Status.RECTIFYING, {"responsible": "z"}, "and a deadline"),
        (
            Status.ACKNOWLEDGED,
            Status.RECTIFYING,
            {"responsible": "z", "deadline": datetime.now(UTC) - timedelta(minutes=1)},
            "already passed",
        ),
        (
            Status.ACKNOWLEDGED,
            Status.RECTIFYING,
            {"responsible": "z", "deadline": datetime(2099, 1, 1)},
            "time zone",
        ),
        (Status.RECTIFYING, Status.RESOLVED, {"evidence_id": "ev-1"}, "needs a note"),
        (Status.RECTIFYING, Status.RESOLVED, {"note": "done"}, "needs a photo"),
        (
            Status.RECTIFYING,
            Status.RESOLVED,
            {"note": "done", "evidence_id": "../x"},
            "must match",
        ),
        (Status.RESOLVED, Status.REOPENED, {}, "what is still wrong"),
    ],
)
def test_missing_details_are_refused(site, status, to, details, message) -> None:  # type: ignore[no-untyped-def]
    a = new_alert(site, status)
    with pytest.raises(lc.MissingDetailError, match=message):
        lc.transition(site, a, to, by=ADMIN, **details)
    assert site.execute("SELECT status FROM alerts WHERE id = %s", (a,)).fetchone() == (
        status.value,
    )


def test_unknown_alert(site) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(lc.AlertNotFoundError):
        lc.acknowledge(site, uuid.uuid4(), by=OFFICER)


def test_overdue_rectifications_surface(site, pg_url) -> None:  # type: ignore[no-untyped-def]
    register_site(pg_url, "P-OTHER", 1)
    now = datetime.now(UTC)
    first, second, other, done = (new_alert(site, Status.ACKNOWLEDGED) for _ in range(4))
    site.execute(
        "UPDATE alerts SET project_id = 'P-OTHER', device_id = 'P-OTHER-towercrane-001' "
        "WHERE id = %s",
        (other,),
    )
    for a, hours in ((first, 1), (second, 2), (other, 1), (done, 1)):
        lc.assign_rectification(
            site, a, by=OFFICER, responsible=f"r{hours}", deadline=now + timedelta(hours=hours)
        )
    lc.resolve(site, done, by=OFFICER, note="fixed", evidence_id="ev-9")
    assert lc.overdue(site, now=now) == []
    late = lc.overdue(site, now=now + timedelta(minutes=90))
    assert {o.alert_id for o in late} == {first, other}
    assert (
        lc.overdue(site, now=now + timedelta(minutes=90), project_id=PROJECT)[0].alert_id == first
    )
    late = lc.overdue(site, now=now + timedelta(hours=3), project_id=PROJECT)
    assert [o.alert_id for o in late] == [first, second]  # most overdue first
    assert late[0].overdue_s == pytest.approx(2 * 3600, abs=1)
