"""Credit on the real database: decay at exact ages, grades at their boundaries, blacklist
periods, idempotent recompute with an explanation, the violation a verified alert records,
and the commands."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import api_helpers
import psycopg
import pytest
from conftest import count
from pydantic import ValidationError
from typer.testing import CliRunner

from alerts import credit
from alerts import lifecycle as lc
from alerts.credit import BlacklistIn, Policy, RecordIn
from alerts.lifecycle import Actor, Status
from edge.simulator import register_site
from smartsite.cli import app
from smartsite.db.registry import EnterpriseIn, link_enterprise, upsert_enterprise
from smartsite.settings import Settings, get_settings

PROJECT = "P-CREDIT"
DEVICE = f"{PROJECT}-towercrane-001"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = Policy()  # the defaults: 730 days, A 90, B 75, C 60
REGULATOR = Actor(name="li.regulator", role="regulator")
OFFICER = Actor(name="wang.officer", role="officer")


def uscc(n: int) -> str:
    return api_helpers.uscc(n, region="510100")


GC, SUB, OTHER_GC = uscc(11), uscc(12), uscc(13)


@pytest.fixture
def firms(db: psycopg.Connection) -> psycopg.Connection:
    for code in (GC, SUB, OTHER_GC):
        upsert_enterprise(db, EnterpriseIn(uscc=code, name=f"firm {code[-4:]}"))
    return db


def violation(points: float, age: timedelta, who: str = GC, **kw: object) -> RecordIn:
    base: dict[str, object] = {
        "uscc": who,
        "kind": "violation",
        "category": "safety",
        "severity": "alarm",
        "points": points,
        "reason": "found on inspection",
        "occurred_at": NOW - age,
        "recorded_by": "li.regulator",
    }
    return RecordIn(**{**base, **kw})  # type: ignore[arg-type]


def stored(db: psycopg.Connection, code: str) -> tuple[float, str, bool]:
    row = db.execute(
        "SELECT credit_score::float8, credit_grade, blacklisted FROM enterprises WHERE uscc = %s",
        (code,),
    ).fetchone()
    assert row is not None
    return row


# --- the math ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "w"),
    [(-3, 1.0), (0, 1.0), (182.5, 0.75), (365, 0.5), (547.5, 0.25), (730, 0.0), (1000, 0.0)],
)
def test_weight_falls_linearly_to_zero_over_the_decay_span(days: float, w: float) -> None:
    assert credit.weight(timedelta(days=days), 730) == pytest.approx(w)


@pytest.mark.parametrize(
    ("score", "grade"),
    [(100, "A"), (90, "A"), (89.9, "B"), (75, "B"), (74.9, "C"), (60, "C"), (59.9, "D"), (0, "D")],
)
def test_grade_thresholds(score: float, grade: str) -> None:
    assert credit.grade_of(score, False, POLICY) == grade
    assert credit.grade_of(score, True, POLICY) == "D"  # a blacklist is the worst standing


def test_settings_refuse_thresholds_out_of_order() -> None:
    with pytest.raises(ValidationError, match="must fall"):
        Settings(credit_grade_a=70, credit_grade_b=75)
    s = Settings(credit_decay_days=365, credit_grade_a=95)
    assert Policy.from_settings(s) == Policy(365, 95, 75, 60)


# --- scores from records ---------------------------------------------------------------------


def test_score_weighs_each_record_by_its_age_and_explains_itself(
    firms: psycopg.Connection,
) -> None:
    db = firms
    credit.add_record(db, violation(10, 365 * DAY, reason="guard rail missing"))  # -5
    credit.add_record(db, violation(6, 182.5 * DAY))  # -4.5
    credit.add_record(db, violation(20, 730 * DAY, reason="old"))  # faded: 0
    credit.add_record(db, violation(4, 0 * DAY, kind="commendation", category="quality"))  # +4
    credit.add_record(db, violation(30, 0 * DAY, who=SUB))  # another firm's: not counted

    s = credit.recompute(db, uscc=GC, now=NOW, policy=POLICY)[0]
    assert (s.score, s.grade, s.blacklisted) == (94.5, "A", False)
    assert stored(db, GC) == (94.5, "A", False)
    # newest first, each with its weight and signed points now
    assert [(r.kind, r.points, r.weight, r.weighted_points) for r in s.records] == [
        ("commendation", 4, 1.0, 4.0),
        ("violation", 6, 0.75, -4.5),
        ("violation", 10, 0.5, -5.0),
        ("violation", 20, 0.0, 0.0),
    ]
    assert s.records[2].reason == "guard rail missing" and s.records[2].age_days == 365
    assert "730 days" in s.rule
    # the other firm is untouched until recomputed
    assert stored(db, SUB) == (100.0, "A", False)


@pytest.mark.parametrize(
    ("points", "score", "grade"),
    [
        (10, 90.0, "A"),
        (10.1, 89.9, "B"),
        (25, 75.0, "B"),
        (25.1, 74.9, "C"),
        (40, 60.0, "C"),
        (40.1, 59.9, "D"),
    ],
)
def test_grades_at_the_boundaries_from_records(
    firms: psycopg.Connection, points: float, score: float, grade: str
) -> None:
    credit.add_record(firms, violation(points, 0 * DAY))
    s = credit.recompute(firms, uscc=GC, now=NOW, policy=POLICY)[0]
    assert (s.score, s.grade) == (score, grade)
    assert stored(firms, GC) == (score, grade, False)


def test_score_is_clamped_to_0_and_100(firms: psycopg.Connection) -> None:
    credit.add_record(firms, violation(80, DAY))
    credit.add_record(firms, violation(80, 2 * DAY))
    credit.add_record(firms, violation(50, DAY, who=SUB, kind="commendation"))
    gc, sub = (credit.explain(firms, uscc=u, now=NOW, policy=POLICY) for u in (GC, SUB))
    assert (gc.score, gc.grade) == (0.0, "D")
    assert (sub.score, sub.grade) == (100.0, "A")


def test_blacklist_is_active_between_start_and_end(firms: psycopg.Connection) -> None:
    db = firms

    def black(who: str, start: timedelta, end: timedelta | None) -> None:
        credit.add_blacklist(
            db,
            BlacklistIn(
                uscc=who,
                starts_at=NOW + start,
                ends_at=None if end is None else NOW + end,
                reason="major accident",
                recorded_by="li.regulator",
            ),
        )

    black(GC, -10 * DAY, None)  # open-ended, active
    black(SUB, -10 * DAY, -DAY)  # expired yesterday
    black(OTHER_GC, DAY, 10 * DAY)  # not yet
    scores = {s.id: s for s in credit.recompute(db, now=NOW, policy=POLICY)}
    assert stored(db, GC) == (100.0, "D", True)
    assert stored(db, SUB) == (100.0, "A", False)
    assert stored(db, OTHER_GC) == (100.0, "A", False)
    assert [e.active for e in scores[SUB].blacklist] == [False]
    assert scores[GC].blacklist[0].reason == "major accident"
    # the end is exclusive: at NOW + 10 days the future entry is over again
    assert credit.explain(db, uscc=OTHER_GC, now=NOW + 5 * DAY, policy=POLICY).blacklisted
    assert not credit.explain(db, uscc=OTHER_GC, now=NOW + 10 * DAY, policy=POLICY).blacklisted
    with pytest.raises(ValidationError, match="end after it starts"):
        BlacklistIn(uscc=GC, starts_at=NOW, ends_at=NOW, reason="x", recorded_by="y")


def test_recompute_is_idempotent_and_rebuilds_from_the_records(
    firms: psycopg.Connection,
) -> None:
    db = firms
    credit.add_record(db, violation(12, 100 * DAY))
    # a stale value the records do not support: recompute puts it right
    db.execute(
        "UPDATE enterprises SET credit_score = 10, credit_grade = 'D' WHERE uscc = %s", (SUB,)
    )
    first = credit.recompute(db, now=NOW, policy=POLICY)
    snapshot = db.execute(
        "SELECT uscc, credit_score, credit_grade, blacklisted FROM enterprises ORDER BY uscc"
    ).fetchall()
    second = credit.recompute(db, now=NOW, policy=POLICY)
    assert first == second
    assert (
        db.execute(
            "SELECT uscc, credit_score, credit_grade, blacklisted FROM enterprises ORDER BY uscc"
        ).fetchall()
        == snapshot
    )
    assert stored(db, SUB) == (100.0, "A", False)
    assert stored(db, GC)[0] == pytest.approx(100 - 12 * (1 - 100 / 730), abs=0.05)


def test_a_source_is_recorded_once_per_subject(firms: psycopg.Connection) -> None:
    rec = violation(5, DAY, source="inspection:2026-031")
    assert credit.add_record(firms, rec) is not None
    assert credit.add_record(firms, rec) is None
    assert credit.add_record(firms, rec.model_copy(update={"uscc": SUB})) is not None
    assert count(firms, "SELECT count(*) FROM credit_records") == 2
    with pytest.raises(credit.CreditError, match="no enterprise"):
        credit.add_record(firms, rec.model_copy(update={"uscc": uscc(99)}))
    with pytest.raises(ValidationError, match="exactly one"):
        RecordIn(**{**rec.model_dump(), "person_id": "w-1"})


# --- verified alerts feed credit -------------------------------------------------------------


def add_person(db: psycopg.Connection, pid: str) -> None:
    db.execute(
        "INSERT INTO persons (id, name, id_number_hash, id_number_masked, id_number_encrypted) "
        "VALUES (%s, %s, %s, '110105********0021', '\\x00')",
        (pid, f"person {pid}", pid.encode()),
    )


@pytest.fixture
def site(firms: psycopg.Connection, pg_url: str) -> psycopg.Connection:
    register_site(pg_url, PROJECT, 1)
    link_enterprise(firms, PROJECT, GC, "general_contractor")
    link_enterprise(firms, PROJECT, SUB, "subcontractor")
    add_person(firms, "pm-1")
    add_person(firms, "worker-1")
    firms.execute(
        "INSERT INTO project_workers (project_id, person_id, role) VALUES "
        "(%s, 'pm-1', 'project_manager'), (%s, 'worker-1', 'worker')",
        (PROJECT, PROJECT),
    )
    return firms


def resolved_alert(db: psycopg.Connection, rule: str = "crane_moment", severity: str = "alarm"):  # type: ignore[no-untyped-def]
    alert_id = uuid.uuid4()
    db.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity, "
        "status, target, title) VALUES (%s, now(), %s, %s, 'hub', %s, %s, 'resolved', %s, "
        "'moment')",
        (alert_id, PROJECT, DEVICE, rule, severity, f"t{alert_id.hex[:6]}"),
    )
    return alert_id


def test_closing_an_alert_records_one_violation_for_the_contractor_and_manager(
    site: psycopg.Connection,
) -> None:
    db = site
    a = resolved_alert(db)
    lc.close(db, a, by=REGULATOR, note="verified on site")
    rows = db.execute(
        "SELECT uscc, person_id, kind, category, severity, points::float8, source, recorded_by "
        "FROM credit_records ORDER BY uscc NULLS LAST"
    ).fetchall()
    assert rows == [
        (GC, None, "violation", "safety", "alarm", 5.0, f"alert:{a}", "li.regulator"),
        (None, "pm-1", "violation", "safety", "alarm", 5.0, f"alert:{a}", "li.regulator"),
    ]
    assert stored(db, GC) == (95.0, "A", False)  # recomputed with the close
    assert stored(db, SUB) == (100.0, "A", False)  # subcontractors are not charged
    assert db.execute("SELECT credit_score::float8 FROM persons WHERE id = 'pm-1'").fetchone() == (
        95.0,
    )

    # reopened and closed again: the same violation, not a second one
    lc.reopen(db, a, by=REGULATOR, note="still unsafe")
    deadline = datetime.now(UTC) + DAY
    lc.assign_rectification(db, a, by=OFFICER, responsible="zhang", deadline=deadline)
    lc.resolve(db, a, by=OFFICER, note="fixed", evidence_id="ev-1")
    lc.close(db, a, by=REGULATOR)
    assert count(db, "SELECT count(*) FROM credit_records") == 2
    assert stored(db, GC) == (95.0, "A", False)

    # a warning of an environmental rule weighs less
    lc.close(db, resolved_alert(db, "noise", "warning"), by=REGULATOR)
    assert stored(db, GC) == (94.0, "A", False)
    explained = credit.explain(db, uscc=GC)
    assert sorted((r.category, r.severity, r.points) for r in explained.records) == [
        ("environment", "warning", 1.0),
        ("safety", "alarm", 5.0),
    ]


def test_a_refused_close_records_nothing(site: psycopg.Connection) -> None:
    a = resolved_alert(site)
    with pytest.raises(lc.NotPermittedError):
        lc.close(site, a, by=OFFICER)
    site.execute(
        "UPDATE alerts SET status = 'rectifying', responsible = 'z', deadline = now() "
        "+ interval '1 day' WHERE id = %s",
        (a,),
    )
    with pytest.raises(lc.IllegalTransitionError):
        lc.close(site, a, by=REGULATOR)
    assert count(site, "SELECT count(*) FROM credit_records") == 0
    assert site.execute("SELECT status FROM alerts WHERE id = %s", (a,)).fetchone() == (
        Status.RECTIFYING.value,
    )


# --- the commands ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, pg_url: str, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SMARTSITE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["credit", *args])
    return r.exit_code, " ".join(r.output.split())


def test_commands_record_blacklist_show_and_recompute(
    firms: psycopg.Connection, cli_env: None
) -> None:
    code, out = run(
        "record", "--uscc", GC, "--kind", "violation", "--category", "safety",
        "--points", "12", "--reason", "no guard rail on level 5", "--by", "li.regulator",
        "--source", "inspection:2026-031", "--severity", "serious",
    )  # fmt: skip
    assert code == 0, out
    assert f"enterprise {GC}: score 88.0, grade B" in out
    assert stored(firms, GC) == (88.0, "B", False)

    code, out = run("show", GC)
    assert code == 0, out
    assert f"enterprise {GC}: score 88.0, grade B" in out
    assert "no guard rail on level 5" in out and "inspection:2026-031" in out and "-12.00" in out

    code, out = run("blacklist", "--uscc", SUB, "--reason", "fatal accident", "--by", "li")
    assert code == 0, out
    assert "blacklisted, grade D" in out
    code, out = run("show", SUB)
    assert "BLACKLISTED" in out and "fatal accident" in out and "no credit records" in out

    firms.execute("UPDATE enterprises SET credit_score = 1 WHERE uscc = %s", (OTHER_GC,))
    code, out = run("recompute")
    assert code == 0, out
    assert "recomputed 3 score(s); 1 graded C or D" in out
    assert stored(firms, OTHER_GC) == (100.0, "A", False)

    code, out = run("show", uscc(99))
    assert code == 1 and "no enterprise" in out
    code, out = run("record", "--uscc", GC, "--kind", "fine", "--category", "safety",
                    "--points", "1", "--reason", "x", "--by", "y")  # fmt: skip
    assert code == 2
