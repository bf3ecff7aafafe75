"""Emergency (issue 8): Order 493 grading at and around every boundary, the one-hour
reporting deadline, follow-up reports that re-grade with the history kept, early warnings
broadcast to a district / projects / all with acknowledgements and scope, threshold overrides
applied by the real alert engine on a real broker, and who is on duty."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_helpers import login, project, user
from conftest import wait_until
from fastapi.testclient import TestClient
from mqtt_helpers import publish_raw

from alerts.defaults import CRANE_WIND
from alerts.engine import AlertEngine
from alerts.rule_store import rules_version
from alerts.rules import Device, RuleBook, RuleRow
from edge.simulator import gateway_id, register_site
from emergency import duty as dt
from emergency import incidents as inc
from emergency import warnings as wn
from emergency.grading import Grade, grade
from smartsite.protocol.messages import Reading, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import Settings

G, L, M, E = Grade.GENERAL, Grade.LARGER, Grade.MAJOR, Grade.ESPECIALLY_MAJOR
NOW = datetime.now(UTC)

# --- grading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deaths", "expected"), [(0, G), (2, G), (3, L), (9, L), (10, M), (29, M), (30, E), (31, E)]
)
def test_deaths_boundaries(deaths: int, expected: Grade) -> None:
    g = grade(deaths, 0, 0)
    assert g.grade is expected
    if expected is not G:
        assert g.deciding == ("deaths",)
        assert "deaths" in g.reason


@pytest.mark.parametrize(
    ("injuries", "expected"),
    [(9, G), (10, L), (49, L), (50, M), (99, M), (100, E)],
)
def test_serious_injury_boundaries(injuries: int, expected: Grade) -> None:
    g = grade(0, injuries, 0)
    assert g.grade is expected
    if expected is not G:
        assert g.deciding == ("serious_injuries",)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (9_999_999, G),
        (9_999_999.99, G),
        (10_000_000, L),
        (49_999_999, L),
        (50_000_000, M),
        (99_999_999.99, M),
        (100_000_000, E),
    ],
)
def test_direct_loss_boundaries(loss: float, expected: Grade) -> None:
    g = grade(0, 0, loss)
    assert g.grade is expected
    if expected is not G:
        assert g.deciding == ("direct_loss_yuan",)


def test_combinations_take_the_highest_and_name_every_deciding_figure() -> None:
    g = grade(2, 49, 50_000_000)
    assert g.grade is M and g.deciding == ("direct_loss_yuan",)
    g = grade(10, 50, 1)
    assert g.grade is M and g.deciding == ("deaths", "serious_injuries")
    g = grade(3, 100, 0)
    assert g.grade is E and g.deciding == ("serious_injuries",)
    assert g.label == "特别重大事故"
    assert "493" in g.citation and "以上" in g.citation
    g = grade(2, 9, 9_999_999)
    assert g.grade is G and len(g.deciding) == 3 and "< 3" in g.reason
    with pytest.raises(ValueError, match="negative"):
        grade(-1, 0, 0)


def test_deadline_status() -> None:
    t = NOW
    assert inc.deadline_status(t, t + timedelta(minutes=60), t) == ("on_time", None)
    assert inc.deadline_status(t, t + timedelta(minutes=61), t) == ("late", 1.0)
    assert inc.deadline_status(t, None, t + timedelta(minutes=59)) == ("awaiting", None)
    assert inc.deadline_status(t, None, t + timedelta(minutes=90)) == ("overdue", 30.0)


# --- the API world ------------------------------------------------------------------------------


@pytest.fixture
def world(db: psycopg.Connection) -> psycopg.Connection:
    project(db, "P1", "110105")
    project(db, "P2", "110105")
    project(db, "P3", "110108")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "officer2", "officer", projects=["P2"])
    user(db, "officer3", "officer", projects=["P3"])
    user(db, "reg-chaoyang", "regulator", district_code="110105")
    user(db, "reg-city", "regulator")
    user(db, "admin1", "admin")
    user(db, "share", "data_sharing", projects=["P1"])
    return db


def _report(client: TestClient, h: dict[str, str], pid: str, ago: timedelta, **kw: object):  # type: ignore[no-untyped-def]
    body = {
        "project_id": pid,
        "occurred_at": (datetime.now(UTC) - ago).isoformat(),
        "place": "3# tower crane",
        "summary": "a worker fell from the scaffold",
        "measures": "area closed, injured to hospital",
        "reporter": "Zhang San 13800000000",
        **kw,
    }
    return client.post("/api/emergency/incidents", json=body, headers=h)


def test_incident_report_deadline_and_late_list(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    o1, reg = login(client, "officer1"), login(client, "reg-chaoyang")
    r = _report(client, o1, "P1", timedelta(minutes=10), deaths=1)
    assert r.status_code == 201, r.text
    on_time = r.json()
    assert on_time["deadline_status"] == "on_time" and on_time["grade"] == "general"
    assert on_time["grade_label"] == "一般事故" and on_time["reported_at"] is not None
    assert "493" in on_time["grade_citation"] and "第九条" in on_time["deadline_source"]

    late = _report(client, o1, "P1", timedelta(hours=2), serious_injuries=12).json()
    assert late["deadline_status"] == "late" and 59 <= late["minutes_late"] <= 61
    assert late["grade"] == "larger" and "serious injuries 12" in late["grade_reason"]

    # a regulator registers an incident it learned of; the project has not reported
    r = client.post(
        "/api/emergency/incidents/notices",
        json={
            "project_id": "P1",
            "occurred_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
            "summary": "collapse reported by the press",
        },
        headers=reg,
    )
    assert r.status_code == 201, r.text
    overdue = r.json()
    assert overdue["deadline_status"] == "overdue" and overdue["reported_at"] is None
    awaiting = client.post(
        "/api/emergency/incidents/notices",
        json={
            "project_id": "P2",
            "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
            "summary": "fire",
        },
        headers=reg,
    ).json()
    assert awaiting["deadline_status"] == "awaiting"

    lates = client.get("/api/emergency/incidents/late", headers=reg).json()
    assert {i["id"] for i in lates} == {late["id"], overdue["id"]}
    listed = client.get("/api/emergency/incidents?late_only=true", headers=o1).json()
    assert {i["id"] for i in listed["items"]} == {late["id"], overdue["id"]}
    assert client.get("/api/emergency/incidents", headers=o1).json()["total"] == 3

    # the project's first report after the notice: reported now, still late
    r = client.post(
        f"/api/emergency/incidents/{overdue['id']}/follow-ups",
        json={"deaths": 3, "reporter": "Li Si", "measures": "rescue"},
        headers=o1,
    )
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["deadline_status"] == "late" and got["reported_at"] is not None
    assert [h["kind"] for h in got["history"]] == ["notice", "initial"]
    assert got["grade"] == "larger"


def test_follow_ups_regrade_and_keep_history(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    o1, reg = login(client, "officer1"), login(client, "reg-chaoyang")
    first = _report(client, o1, "P1", timedelta(minutes=20), deaths=2).json()
    assert first["grade"] == "general" and first["revision"] == 1
    iid = first["id"]
    r = client.post(
        f"/api/emergency/incidents/{iid}/follow-ups",
        json={"deaths": 3, "note": "one died in hospital"},
        headers=o1,
    )
    assert r.status_code == 201 and r.json()["grade"] == "larger"
    r = client.post(
        f"/api/emergency/incidents/{iid}/follow-ups",
        json={"direct_loss_yuan": 50_000_000, "note": "loss assessed"},
        headers=reg,
    )
    d = r.json()
    assert d["grade"] == "major" and d["revision"] == 3
    assert d["deaths"] == 3 and d["direct_loss_yuan"] == 50_000_000
    assert "direct loss" in d["grade_reason"]
    hist = d["history"]
    assert [(h["revision"], h["kind"], h["grade"]) for h in hist] == [
        (1, "initial", "general"),
        (2, "follow_up", "larger"),
        (3, "follow_up", "major"),
    ]
    assert [h["deaths"] for h in hist] == [2, 3, 3]
    assert hist[2]["by_role"] == "regulator" and hist[1]["note"] == "one died in hospital"
    assert d["reported_at"] == first["reported_at"]  # the deadline judges the first report
    detail = client.get(f"/api/emergency/incidents/{iid}", headers=o1).json()
    assert detail == d
    graded = client.get("/api/emergency/incidents?grade=major", headers=reg).json()
    assert [i["id"] for i in graded["items"]] == [iid]


def test_incident_scope_and_roles(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    o1, o3, share = login(client, "officer1"), login(client, "officer3"), login(client, "share")
    assert _report(client, o1, "P3", timedelta(minutes=1)).status_code == 404
    assert _report(client, o1, "NOPE", timedelta(minutes=1)).status_code == 404
    assert _report(client, share, "P1", timedelta(minutes=1)).status_code == 403
    iid = _report(client, o1, "P1", timedelta(minutes=1)).json()["id"]
    assert client.get(f"/api/emergency/incidents/{iid}", headers=o3).status_code == 404
    assert client.get(f"/api/emergency/incidents/{iid}", headers=share).status_code == 200
    r = client.post(f"/api/emergency/incidents/{iid}/follow-ups", json={"deaths": 1}, headers=o3)
    assert r.status_code == 404
    r = client.post(f"/api/emergency/incidents/{iid}/follow-ups", json={"deaths": 1}, headers=share)
    assert r.status_code == 403
    assert client.get("/api/emergency/incidents", headers=o3).json()["total"] == 0
    notice = {"project_id": "P1", "occurred_at": NOW.isoformat(), "summary": "x"}
    r = client.post("/api/emergency/incidents/notices", json=notice, headers=o1)
    assert r.status_code == 403
    r = client.post(
        "/api/emergency/grade", json={"deaths": 10, "serious_injuries": 0}, headers=share
    )
    assert r.json()["grade"] == "major"
    negative = _report(client, o1, "P1", timedelta(minutes=1), deaths=-1)
    assert negative.status_code == 422


# --- warnings -----------------------------------------------------------------------------------


def _warning(target: str, **kw: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "kind": "strong_wind",
        "level": "orange",
        "title": "大风橙色预警",
        "text": "停止塔吊作业 stop tower-crane work",
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=6)).isoformat(),
        "target": target,
        **kw,
    }


def test_warning_broadcast_acknowledgement_and_scope(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    reg, city = login(client, "reg-chaoyang"), login(client, "reg-city")
    o1, o2, o3 = login(client, "officer1"), login(client, "officer2"), login(client, "officer3")
    share = login(client, "share")

    r = client.post(
        "/api/emergency/warnings", json=_warning("district", district="110105"), headers=reg
    )
    assert r.status_code == 201, r.text
    w = r.json()
    assert [t["project_id"] for t in w["projects"]] == ["P1", "P2"]
    assert w["state"] == "in_force" and w["targets"] == 2 and w["acknowledged"] == 0
    wid = w["id"]

    # out of scope: another district, another district's project; unknown; officer; share
    bad = client.post(
        "/api/emergency/warnings", json=_warning("district", district="110108"), headers=reg
    )
    assert bad.status_code == 404
    bad = client.post(
        "/api/emergency/warnings", json=_warning("projects", projects=["P1", "P3"]), headers=reg
    )
    assert bad.status_code == 404
    bad = client.post(
        "/api/emergency/warnings", json=_warning("district", district="999999"), headers=city
    )
    assert bad.status_code == 404
    assert (
        client.post("/api/emergency/warnings", json=_warning("all"), headers=o1).status_code == 403
    )
    assert (
        client.post("/api/emergency/warnings", json=_warning("all"), headers=share).status_code
        == 403
    )
    bad = client.post(
        "/api/emergency/warnings", json=_warning("district", district=None), headers=reg
    )
    assert bad.status_code == 422

    # all: the issuer's scope only; the city regulator's: every project
    mine = client.post("/api/emergency/warnings", json=_warning("all"), headers=reg).json()
    assert [t["project_id"] for t in mine["projects"]] == ["P1", "P2"]
    everyone = client.post(
        "/api/emergency/warnings", json=_warning("all", kind="heat", level="yellow"), headers=city
    ).json()
    assert [t["project_id"] for t in everyone["projects"]] == ["P1", "P2", "P3"]
    listed = client.post(
        "/api/emergency/warnings",
        json=_warning("projects", projects=["P2"], kind="heavy_rain"),
        headers=reg,
    ).json()
    assert [t["project_id"] for t in listed["projects"]] == ["P2"]

    # officers see only their projects' targets; another scope is absent
    seen = client.get(f"/api/emergency/warnings/{wid}", headers=o1).json()
    assert [t["project_id"] for t in seen["projects"]] == ["P1"] and seen["targets"] == 1
    assert client.get(f"/api/emergency/warnings/{wid}", headers=o3).status_code == 404
    assert client.get(f"/api/emergency/warnings/{listed['id']}", headers=o1).status_code == 404
    o3_list = client.get("/api/emergency/warnings", headers=o3).json()
    assert [x["id"] for x in o3_list["items"]] == [everyone["id"]]
    assert o3_list["items"][0]["targets"] == 1

    # awaiting acknowledgement, overall and per warning
    waiting = client.get("/api/emergency/warnings/awaiting-acknowledgement", headers=reg).json()
    assert {(x["warning_id"], x["project_id"]) for x in waiting} == {
        (wid, "P1"),
        (wid, "P2"),
        (mine["id"], "P1"),
        (mine["id"], "P2"),
        (everyone["id"], "P1"),
        (everyone["id"], "P2"),
        (listed["id"], "P2"),
    }
    r = client.post(
        f"/api/emergency/warnings/{wid}/acknowledge", json={"note": "cranes stopped"}, headers=o1
    )
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["acknowledged"] == 1 and acked["projects"][0]["note"] == "cranes stopped"
    assert acked["projects"][0]["acknowledged_by"] == "user:officer1"
    per = client.get(f"/api/emergency/warnings/{wid}", headers=reg).json()
    assert [(t["project_id"], t["acknowledged_at"] is not None) for t in per["projects"]] == [
        ("P2", False),
        ("P1", True),
    ]
    assert per["acknowledged"] == 1 and per["targets"] == 2
    waiting = client.get(
        "/api/emergency/warnings/awaiting-acknowledgement?project=P1", headers=o1
    ).json()
    assert {x["warning_id"] for x in waiting} == {mine["id"], everyone["id"]}
    # acknowledging again keeps the first; not a target; another scope; read-only roles
    again = client.post(
        f"/api/emergency/warnings/{wid}/acknowledge", json={"note": "again"}, headers=o1
    ).json()
    assert again["projects"][0]["note"] == "cranes stopped"
    r = client.post(
        f"/api/emergency/warnings/{wid}/acknowledge", json={"project_id": "P3"}, headers=o1
    )
    assert r.status_code == 404
    assert (
        client.post(f"/api/emergency/warnings/{wid}/acknowledge", json={}, headers=o3).status_code
        == 404
    )
    assert (
        client.post(
            f"/api/emergency/warnings/{wid}/acknowledge", json={}, headers=share
        ).status_code
        == 403
    )

    # cancel: the district regulator cannot cancel the city's; cancelled ones need no ack
    r = client.post(
        f"/api/emergency/warnings/{everyone['id']}/cancel", json={"reason": "x"}, headers=reg
    )
    assert r.status_code == 403
    r = client.post(f"/api/emergency/warnings/{wid}/cancel", json={"reason": "calm"}, headers=o1)
    assert r.status_code == 403
    r = client.post(f"/api/emergency/warnings/{wid}/cancel", json={"reason": "calm"}, headers=reg)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = client.post(f"/api/emergency/warnings/{wid}/cancel", json={"reason": "calm"}, headers=reg)
    assert r.status_code == 409
    r = client.post(f"/api/emergency/warnings/{wid}/acknowledge", json={}, headers=o2)
    assert r.status_code == 409
    waiting = client.get("/api/emergency/warnings/awaiting-acknowledgement", headers=o2).json()
    assert wid not in {x["warning_id"] for x in waiting}
    states = client.get("/api/emergency/warnings?state=cancelled", headers=reg).json()
    assert [x["id"] for x in states["items"]] == [wid]

    # overrides must name a rule with levels
    bad = client.post(
        "/api/emergency/warnings",
        json=_warning("all", overrides=[{"rule": "no_such_rule", "alarm": 1}]),
        headers=reg,
    )
    assert bad.status_code == 422


# --- threshold overrides ------------------------------------------------------------------------


def test_apply_overrides_is_stricter_and_scoped() -> None:
    spec = CRANE_WIND
    kind = RuleRow(1, "crane_wind", "tower_crane", None, None, True, spec, 1)
    device_row = RuleRow(2, "crane_wind", "tower_crane", None, "D-B", True, spec, 1)
    active = {
        "PA": [(7, wn.Override(rule="crane_wind", warning=6.0, alarm=9.0))],
        "PB": [(7, wn.Override(rule="crane_wind", alarm=12.0))],  # looser: no effect
    }
    book = RuleBook(wn.apply_overrides([kind, device_row], active, {"D-B": "PB"}))
    a = book.for_device(Device("D-A", "PA", "tower_crane"))["crane_wind"]
    assert a.spec.levels.alarm.value == 9.0 and a.spec.levels.warning.value == 6.0
    assert "#7" in a.spec.title
    b = book.for_device(Device("D-B", "PB", "tower_crane"))["crane_wind"]
    assert b.id == 2 and b.spec.levels.alarm.value == 10.8
    c = book.for_device(Device("D-C", "PC", "tower_crane"))["crane_wind"]
    assert c.spec is spec


WIND_A, WIND_B = "P-WIND", "P-CALM"


def _crane(project_id: str, n: int) -> str:
    return f"{project_id}-towercrane-{1 + 6 * n:03d}"


@pytest.fixture
def engine(pg_url, broker, alert_settings: Settings, db) -> Iterator[AlertEngine]:  # type: ignore[no-untyped-def]
    register_site(pg_url, WIND_A, 13, district="110105")
    register_site(pg_url, WIND_B, 13, district="110108")
    s = alert_settings
    e = AlertEngine(pg_url, broker.endpoint, s).start()
    e.wait_connected()
    yield e
    e.stop()


def test_wind_warning_lowers_the_stop_limit_in_the_real_engine(  # type: ignore[no-untyped-def]
    engine: AlertEngine, broker, settings: Settings, db
) -> None:
    seq = {WIND_A: 0, WIND_B: 0}

    def wind(project_id: str, device: str, value: float) -> None:
        seq[project_id] += 1
        gw = gateway_id(project_id)
        msg = Telemetry(
            device=gw,
            seq=seq[project_id],
            ts=datetime.now(UTC),
            readings=[Reading(metric="wind_speed_ms", value=value, unit="m/s", source=device)],
        )
        topic = build(settings.topic_prefix, project_id, gw, Kind.TELEMETRY)
        publish_raw(broker.endpoint, [(topic, encode(msg))])

    def level(device: str) -> Callable[[], str | None]:
        def get() -> str | None:
            row = db.execute(
                "SELECT severity FROM alerts WHERE device_id = %s AND rule = 'crane_wind'"
                " AND cleared_at IS NULL",
                (device,),
            ).fetchone()
            return row[0] if row else None

        return get

    def reloaded() -> None:
        want = rules_version(db)
        wait_until(lambda: engine._rules_version == want, timeout=15, what="rules reloaded")

    # before: 9.5 m/s is between the warning (8.0) and the stop limit (10.8)
    before = _crane(WIND_A, 0)
    wind(WIND_A, before, 9.5)
    wait_until(lambda: level(before)() is not None, timeout=20, what="warning before")
    assert level(before)() == "warning"

    now = datetime.now(UTC)
    w = wn.WarningIn(
        kind="strong_wind",
        level="orange",
        title="大风橙色预警",
        starts_at=now - timedelta(seconds=1),
        ends_at=now + timedelta(hours=1),
        target="projects",
        projects=[WIND_A],
        overrides=[wn.Override(rule="crane_wind", warning=6.0, alarm=9.0)],
    )
    wid = wn.issue(db, w, None, "user:reg-city")
    reloaded()
    assert engine._rules_version >= 1 << 40
    during, calm = _crane(WIND_A, 1), _crane(WIND_B, 0)
    wind(WIND_A, during, 9.5)
    wind(WIND_B, calm, 9.5)
    wait_until(lambda: level(during)() is not None, timeout=20, what="alarm during")
    wait_until(lambda: level(calm)() is not None, timeout=20, what="warning elsewhere")
    assert level(during)() == "alarm"
    assert level(calm)() == "warning"  # not targeted: the normal limits
    title = db.execute(
        "SELECT title, threshold FROM alerts WHERE device_id = %s", (during,)
    ).fetchone()
    assert title is not None and f"#{wid}" in title[0] and title[1] == 9.0

    # the warning's end passes: the engine reloads the normal limits without a rule change
    db.execute("UPDATE emergency_warnings SET ends_at = now() WHERE id = %s", (wid,))
    reloaded()
    assert engine._rules_version < 1 << 40
    after = _crane(WIND_A, 2)
    wind(WIND_A, after, 9.5)
    wait_until(lambda: level(after)() is not None, timeout=20, what="warning after")
    assert level(after)() == "warning"


# --- duty ---------------------------------------------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _local(d: date, t: time) -> str:
    return datetime.combine(d, t, SHANGHAI).isoformat()


def test_on_duty_now(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    o1, o3, reg, share = (
        login(client, "officer1"),
        login(client, "officer3"),
        login(client, "reg-chaoyang"),
        login(client, "share"),
    )
    monday = date(2025, 6, 2)
    roster = {
        "name": "P1 项目部",
        "phone": "010-1",
        "contacts": [
            {"name": "Wang", "title": "项目经理", "phone": "139"},
            {"name": "Zhao", "title": "安全员", "phone": "138"},
            {"name": "Qian", "title": "安全员", "phone": "137"},
        ],
        "shifts": [
            {"contact": "Zhao", "weekdays": [1, 2, 3, 4, 5], "start": "08:00", "end": "20:00"},
            {"contact": "Qian", "weekdays": [1, 2, 3, 4, 5], "start": "20:00", "end": "08:00"},
            {
                "contact": "Wang",
                "role": "leader",
                "on_date": "2025-06-02",
                "start": "00:00",
                "end": "00:00",
            },
        ],
    }
    r = client.put("/api/emergency/duty/projects/P1", json=roster, headers=o1)
    assert r.status_code == 200, r.text
    assert client.put("/api/emergency/duty/projects/P3", json=roster, headers=o1).status_code == 404
    assert (
        client.put("/api/emergency/duty/projects/P1", json=roster, headers=share).status_code == 403
    )
    bad = {
        **roster,
        "shifts": [
            {"contact": "Nobody", "on_date": "2025-06-02", "start": "08:00", "end": "09:00"}
        ],
    }
    assert client.put("/api/emergency/duty/projects/P1", json=bad, headers=o1).status_code == 422

    def now_at(d: date, t: time, h: dict[str, str] = o1) -> list[tuple[str, str]]:
        r = client.get(
            "/api/emergency/duty/projects/P1/now", params={"at": _local(d, t)}, headers=h
        )
        assert r.status_code == 200, r.text
        return [(x["name"], x["role"]) for x in r.json()["project"]["on_duty"]]

    # Monday 10:00 local: the leader of the day first, then the day shift
    assert now_at(monday, time(10, 0)) == [("Wang", "leader"), ("Zhao", "duty")]
    # Monday 07:59: the night shift began Sunday? No (weekdays only): only the leader
    assert now_at(monday, time(7, 59)) == [("Wang", "leader")]
    # Tuesday 03:00: Monday's night shift runs past midnight; the dated leader's day is over
    assert now_at(monday + timedelta(days=1), time(3, 0)) == [("Qian", "duty")]
    # Saturday 08:00 (Friday's night ended): nobody
    assert now_at(monday + timedelta(days=5), time(8, 0)) == []
    assert now_at(monday + timedelta(days=5), time(7, 0)) == [("Qian", "duty")]
    # the same moment given in UTC
    r = client.get(
        "/api/emergency/duty/projects/P1/now",
        params={"at": datetime(2025, 6, 2, 2, 0, tzinfo=UTC).isoformat()},  # 10:00 Shanghai
        headers=share,
    ).json()
    assert [x["name"] for x in r["project"]["on_duty"]] == ["Wang", "Zhao"]
    assert r["project"]["at"].endswith("+08:00") and r["regulator"] is None
    assert client.get("/api/emergency/duty/projects/P1/now", headers=o3).status_code == 404
    assert (
        client.get("/api/emergency/duty/projects/P1", headers=o1).json()["contacts"][0]["name"]
        == "Wang"
    )

    # the district's office: its regulator keeps it; others may not
    office = {
        "name": "朝阳区住建委值班室",
        "phone": "010-2",
        "contacts": [{"name": "Sun", "phone": "136"}],
        "shifts": [
            {"contact": "Sun", "weekdays": [1, 2, 3, 4, 5, 6, 7], "start": "09:00", "end": "09:00"}
        ],
    }
    assert (
        client.put("/api/emergency/duty/districts/110108", json=office, headers=reg).status_code
        == 403
    )
    assert (
        client.put("/api/emergency/duty/districts/city", json=office, headers=reg).status_code
        == 403
    )
    assert (
        client.put("/api/emergency/duty/districts/110105", json=office, headers=o1).status_code
        == 403
    )
    assert (
        client.put("/api/emergency/duty/districts/999999", json=office, headers=reg).status_code
        == 404
    )
    r = client.put("/api/emergency/duty/districts/110105", json=office, headers=reg)
    assert r.status_code == 200, r.text
    r = client.get(
        "/api/emergency/duty/districts/110105/now",
        params={"at": _local(monday, time(8, 0))},
        headers=o3,
    ).json()
    assert [(x["name"], x["starts_at"][:16]) for x in r["on_duty"]] == [("Sun", "2025-06-01T09:00")]
    both = client.get(
        "/api/emergency/duty/projects/P1/now",
        params={"at": _local(monday, time(10, 0))},
        headers=o1,
    ).json()
    assert [x["name"] for x in both["regulator"]["on_duty"]] == ["Sun"]
    assert client.get("/api/emergency/duty/districts/110108/now", headers=reg).status_code == 404


def test_on_duty_pure_wraps_midnight() -> None:
    roster = dt.Roster(
        kind="project",
        district_code=None,
        project_id="P",
        name="x",
        phone="",
        contacts=[dt.Contact(name="A")],
        shifts=[dt.Shift(contact="A", on_date=date(2025, 1, 1), start=time(22), end=time(6))],
        updated_by="t",
        updated_at=NOW,
    )
    at = datetime(2025, 1, 2, 5, 59, tzinfo=SHANGHAI)
    assert [d.name for d in dt.on_duty(roster, at, SHANGHAI)] == ["A"]
    assert dt.on_duty(roster, at + timedelta(minutes=1), SHANGHAI) == []
    assert dt.on_duty(roster, datetime(2025, 1, 1, 21, 59, tzinfo=SHANGHAI), SHANGHAI) == []
