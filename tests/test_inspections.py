"""Random spot checks (双随机一公开) on the real database: the draw is reproducible from its
seed, respects the exclusions (conflict of interest, recent inspection, district rule),
weights projects by risk in the frequencies over many draws, and its verification catches a
tampered snapshot or result; a confirmed finding lowers the responsible enterprise's credit
once; the API keeps district scopes apart and publishes results."""

from __future__ import annotations

import copy
import math
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from api_helpers import login, project, uscc, user
from fastapi.testclient import TestClient
from test_server_alerts import make_alert

from alerts.risk import NO_VALID_PERMIT_POINTS, OPEN_ALARM_POINTS
from inspections import draw as dr
from inspections import records as rec
from smartsite.db.registry import EnterpriseIn, link_enterprise, upsert_enterprise

TODAY = date.today()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


GC1, GC2, GC3 = uscc(1), uscc(2), uscc(3)


def inspector(db: psycopg.Connection, iid: str, district: str | None = "110105", *ties: str) -> str:
    db.execute(
        "INSERT INTO inspectors (id, name, district_code) VALUES (%s, %s, %s)",
        (iid, f"Inspector {iid}", district),
    )
    for t in ties:
        db.execute(
            "INSERT INTO inspector_affiliations (inspector_id, uscc) VALUES (%s, %s)", (iid, t)
        )
    return iid


@pytest.fixture
def world(db: psycopg.Connection) -> psycopg.Connection:
    """Three projects in 110105 (P1 risky: open alarms), one in 110108; five inspectors."""
    for pid, district in (("P1", "110105"), ("P2", "110105"), ("P3", "110105")):
        project(db, pid, district)
    project(db, "Q1", "110108")
    for code, pid in ((GC1, "P1"), (GC2, "P2"), (GC3, "P3")):
        upsert_enterprise(db, EnterpriseIn(uscc=code, name=f"firm {code[-4:]}"))
        link_enterprise(db, pid, code, "general_contractor")
    link_enterprise(db, "Q1", GC3, "general_contractor")
    for i in range(3):
        make_alert(db, "P1", device=f"d{i}")
    inspector(db, "I1", "110105", GC1)  # works for P1's contractor
    inspector(db, "I2", "110105")
    inspector(db, "I3", "110105")
    inspector(db, "I4", "110108")
    inspector(db, "I5", None)  # city level
    return db


def params(**kw: object) -> dr.DrawParams:
    return dr.DrawParams.model_validate({"projects": 2, "inspectors_per_project": 2, **kw})


def draw_with(
    db: psycopg.Connection, seed: int, p: dr.DrawParams | None = None
) -> list[dr.DrawnProject]:
    return dr.run(dr.build_snapshot(db, p or params(), seed, TODAY))


def reseeded(snapshot: dict, seed: int) -> dict:
    return {**snapshot, "seed": seed}


# --- the draw ----------------------------------------------------------------------------------


def test_same_seed_same_draw_and_another_seed_another(world: psycopg.Connection) -> None:
    first = draw_with(world, 42)
    assert draw_with(world, 42) == first
    assert len(first) == 2 and all(len(d.inspectors) == 2 for d in first)
    results = {
        tuple((d.project_id, tuple(d.inspectors)) for d in draw_with(world, s)) for s in range(20)
    }
    assert len(results) > 5  # different seeds, different draws (almost surely)

    a = dr.create_draw(world, params(), title="round 1", by="reg", as_of=TODAY, seed=7)
    b = dr.create_draw(world, params(recent_days=0), title="round 2", by="reg", as_of=TODAY, seed=7)
    assert dr.get_draw(world, a).results == dr.run(dr.get_draw(world, a).snapshot)
    # same inputs and seed (recent_days=0: the first draw's assignments do not exclude)
    assert dr.get_draw(world, b).results == dr.get_draw(world, a).results
    stored = dr.get_draw(world, a)
    assert stored.seed == 7 and stored.snapshot["seed"] == 7
    assert stored.snapshot_sha256 == dr.digest(stored.snapshot)


def test_a_seed_is_chosen_and_recorded_when_none_is_given(world: psycopg.Connection) -> None:
    d = dr.get_draw(world, dr.create_draw(world, params(), title="t", by="reg", as_of=TODAY))
    assert 0 <= d.seed <= dr.MAX_SEED and dr.verify(world, d.id).ok


def test_exclusions_conflict_of_interest_and_recent_inspection(
    world: psycopg.Connection,
) -> None:
    snap = dr.build_snapshot(world, params(projects=4), 1, TODAY)
    reasons = {(e["project_id"], e["inspector_id"]): e["reasons"] for e in snap["exclusions"]}
    assert reasons[("P1", "I1")] == [f"affiliation: with {GC1}"]
    assert ("P2", "I1") not in reasons
    # I1 is never drawn for P1, whatever the seed
    for seed in range(300):
        for d in dr.run(reseeded(snap, seed)):
            assert d.project_id in {"P1", "P2", "P3", "Q1"}
            assert not (d.project_id == "P1" and "I1" in d.inspectors)

    # I2 and I3 were drawn for P2 long ago and inspected it 30 days ago: neither is drawn for
    # it again within recent_days
    world.execute(
        "INSERT INTO spot_check_draws (title, algorithm, seed, params, snapshot,"
        " snapshot_sha256, drawn_by, drawn_at) VALUES ('old', %s, 1, '{}', '{}', %s, 'x', %s)"
        " RETURNING id",
        (dr.ALGORITHM, "0" * 64, datetime(2020, 1, 1, tzinfo=UTC)),
    )
    old = world.execute("SELECT id FROM spot_check_draws WHERE title = 'old'").fetchone()
    assert old is not None
    world.execute("INSERT INTO spot_check_results VALUES (%s, 1, 'P2')", (old[0],))
    world.execute(
        "INSERT INTO spot_check_assignments VALUES (%s, 'P2', 1, 'I2'), (%s, 'P2', 2, 'I3')",
        (old[0], old[0]),
    )
    iid = rec.create_inspection(
        world,
        rec.InspectionIn(draw_id=old[0], project_id="P2", inspected_on=TODAY - timedelta(days=30)),
        by="reg",
    )
    assert iid > 0
    snap = dr.build_snapshot(world, params(projects=4, recent_days=365), 1, TODAY)
    reasons = {(e["project_id"], e["inspector_id"]): e["reasons"] for e in snap["exclusions"]}
    assert reasons[("P2", "I2")] == ["recent: inspected or drawn within 365 days"]
    for seed in range(300):
        for d in dr.run(reseeded(snap, seed)):
            assert not (d.project_id == "P2" and {"I2", "I3"} & set(d.inspectors))
    # inspected 30 days ago: a 20-day window lets them in again
    snap = dr.build_snapshot(world, params(projects=4, recent_days=20), 1, TODAY)
    assert not [e for e in snap["exclusions"] if e["project_id"] == "P2"]


def test_former_affiliation_counts_for_the_cooling_off_period_only(
    world: psycopg.Connection,
) -> None:
    inspector(world, "I6", "110105")
    world.execute(
        "INSERT INTO inspector_affiliations (inspector_id, uscc, ended_on) VALUES ('I6', %s, %s)",
        (GC2, TODAY - timedelta(days=400)),
    )
    pairs = lambda snap: {(e["project_id"], e["inspector_id"]) for e in snap["exclusions"]}  # noqa: E731
    assert ("P2", "I6") in pairs(dr.build_snapshot(world, params(), 1, TODAY))
    short = params(cooling_off_days=365)
    assert ("P2", "I6") not in pairs(dr.build_snapshot(world, short, 1, TODAY))


def test_district_rule_and_projects_without_enough_inspectors(world: psycopg.Connection) -> None:
    same = dr.build_snapshot(world, params(projects=4, district_rule="same"), 5, TODAY)
    for seed in range(100):
        for d in dr.run(reseeded(same, seed)):
            if d.project_id.startswith("P"):
                assert "I4" not in d.inspectors  # I4 is of 110108
            else:
                assert set(d.inspectors) <= {"I4", "I5"}
    other = dr.build_snapshot(world, params(projects=4, district_rule="other"), 5, TODAY)
    for seed in range(100):
        for d in dr.run(reseeded(other, seed)):
            if d.project_id.startswith("P"):
                assert set(d.inspectors) <= {"I4", "I5"}
    # three per project: with the 'other' rule a 110105 project has two eligible (I4, I5)
    few = dr.build_snapshot(
        world, params(projects=4, district_rule="other", inspectors_per_project=3), 5, TODAY
    )
    assert {p["project_id"] for p in few["excluded_projects"]} == {"P1", "P2", "P3"}
    assert "only 2 eligible inspector(s), 3 needed" in few["excluded_projects"][0]["reason"]
    assert [d.project_id for d in dr.run(few)] == ["Q1"]


def test_risk_weighting_shows_in_the_frequencies(world: psycopg.Connection) -> None:
    # One project per draw out of P1 and P2 (P3 is completed, not a candidate).
    p = params(projects=1, inspectors_per_project=1, district="110105")
    world.execute("UPDATE projects SET status = 'completed' WHERE id = 'P3'")
    snap = dr.build_snapshot(world, p, 0, TODAY)
    weights = {c["project_id"]: c["weight"] for c in snap["projects"]}
    # neither has a permit (25 points each); P1 has 3 open alarms
    assert weights == {
        "P1": 10 + NO_VALID_PERMIT_POINTS + 3 * OPEN_ALARM_POINTS,
        "P2": 10 + NO_VALID_PERMIT_POINTS,
    }
    n = 2000
    hits = sum(dr.run(reseeded(snap, seed))[0].project_id == "P1" for seed in range(n))
    prob = weights["P1"] / sum(weights.values())
    sd = math.sqrt(n * prob * (1 - prob))
    assert abs(hits - n * prob) < 4 * sd, (hits, n * prob, sd)
    # and with equal weights, about half
    flat = copy.deepcopy(snap)
    for c in flat["projects"]:
        c["weight"] = 10
    hits = sum(dr.run(reseeded(flat, seed))[0].project_id == "P1" for seed in range(n))
    assert abs(hits - n / 2) < 4 * math.sqrt(n / 4)


def test_verify_detects_a_tampered_snapshot_or_result(world: psycopg.Connection) -> None:
    did = dr.create_draw(world, params(), title="t", by="reg", as_of=TODAY, seed=11)
    v = dr.verify(world, did)
    assert v.ok and v.hash_matches and v.result_matches and v.problems == []

    # a lower weight for the riskiest project: the hash and the weight check catch it
    world.execute(
        "UPDATE spot_check_draws SET snapshot = jsonb_set(snapshot, '{projects,0,weight}', '1')"
        " WHERE id = %s",
        (did,),
    )
    v = dr.verify(world, did)
    assert not v.ok and not v.hash_matches and not v.weights_consistent
    # rehashed to hide it: the weights still do not add up
    snap = dr.get_draw(world, did).snapshot
    world.execute(
        "UPDATE spot_check_draws SET snapshot_sha256 = %s WHERE id = %s", (dr.digest(snap), did)
    )
    v = dr.verify(world, did)
    assert v.hash_matches and not v.weights_consistent and not v.ok

    # a swapped inspector in the stored result
    did = dr.create_draw(world, params(), title="t2", by="reg", as_of=TODAY, seed=12)
    first = dr.get_draw(world, did).results[0]
    other = next(i for i in ("I1", "I2", "I3", "I4", "I5") if i not in first.inspectors)
    world.execute(
        "UPDATE spot_check_assignments SET inspector_id = %s WHERE draw_id = %s"
        " AND project_id = %s AND rank = 1",
        (other, did, first.project_id),
    )
    v = dr.verify(world, did)
    assert v.hash_matches and not v.result_matches and not v.ok
    assert v.recomputed is not None and v.recomputed[0] == first


# --- records and credit ------------------------------------------------------------------------


def test_confirmed_finding_lowers_the_enterprise_credit_once(world: psycopg.Connection) -> None:
    did = dr.create_draw(
        world,
        params(projects=4, inspectors_per_project=1),
        title="t",
        by="reg",
        as_of=TODAY,
        seed=1,
    )
    iid = rec.create_inspection(
        world, rec.InspectionIn(draw_id=did, project_id="P2", inspected_on=TODAY), by="reg"
    )
    with pytest.raises(rec.InvalidError):
        rec.add_finding(
            world,
            iid,
            rec.FindingIn(
                category="safety", severity="major", description="x", responsible_uscc=GC1
            ),
            by="reg",
        )
    fid = rec.add_finding(
        world,
        iid,
        rec.FindingIn(
            category="safety",
            severity="major",
            description="scaffold without toe boards",
            responsible_uscc=GC2,
            rectification=rec.RectificationIn(
                requirement="fit toe boards", deadline=datetime.now(UTC) + timedelta(days=3)
            ),
        ),
        by="reg",
    )
    before = world.execute("SELECT credit_score::float8 FROM enterprises WHERE uscc = %s", (GC2,))
    assert before.fetchone() == (100.0,)
    added = rec.confirm_finding(world, iid, fid, by="chief")
    assert len(added) == 1
    score = world.execute("SELECT credit_score::float8 FROM enterprises WHERE uscc = %s", (GC2,))
    assert score.fetchone() == (100.0 - rec.FINDING_POINTS["major"],)
    assert rec.confirm_finding(world, iid, fid, by="chief") == []
    score = world.execute("SELECT credit_score::float8 FROM enterprises WHERE uscc = %s", (GC2,))
    assert score.fetchone() == (100.0 - rec.FINDING_POINTS["major"],)
    sources = world.execute("SELECT source FROM credit_records").fetchall()
    assert sources == [(f"inspection:{iid}:{fid}",)]
    got = rec.get_inspection(world, iid)
    assert got.findings[0].status == "confirmed" and got.findings[0].credit_record_ids == added
    assert got.rectification_orders[0].requirement == "fit toe boards"


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture
def api_world(world: psycopg.Connection) -> psycopg.Connection:
    user(world, "reg-chaoyang", "regulator", district_code="110105")
    user(world, "reg-haidian", "regulator", district_code="110108")
    user(world, "officer1", "officer", projects=["P1", "P2", "P3"])
    user(world, "officer-q", "officer", projects=["Q1"])
    user(world, "admin1", "admin")
    return world


def test_api_draw_scope_publication_and_verify(
    client: TestClient, api_world: psycopg.Connection
) -> None:
    reg = login(client, "reg-chaoyang")
    body = {"title": "2026 Q2", "projects": 2, "inspectors_per_project": 2}
    r = client.post("/api/spot-checks/draws", json=body, headers=reg)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["district_code"] == "110105" and d["seed"] >= 0 and d["snapshot"] is not None
    assert {x["project_id"] for x in d["results"]} <= {"P1", "P2", "P3"}
    assert all(len(x["inspectors"]) == 2 for x in d["results"])
    draw_id = d["id"]
    # another district's draw is not the Chaoyang regulator's to make
    r = client.post("/api/spot-checks/draws", json={**body, "district": "110108"}, headers=reg)
    assert r.status_code == 403
    # the officer cannot draw
    officer = login(client, "officer1")
    assert client.post("/api/spot-checks/draws", json=body, headers=officer).status_code == 403

    other = login(client, "reg-haidian")
    for path in ("", "/verify"):
        assert (
            client.get(f"/api/spot-checks/draws/{draw_id}{path}", headers=other).status_code == 404
        )
        assert (
            client.get(f"/api/spot-checks/draws/{draw_id}{path}", headers=officer).status_code
            == 404
        )
    assert (
        client.post(f"/api/spot-checks/draws/{draw_id}/publish", headers=other).status_code == 404
    )
    assert client.get("/api/spot-checks/draws", headers=other).json()["total"] == 0
    assert client.get("/api/spot-checks/published", headers=officer).json() == []

    r = client.get(f"/api/spot-checks/draws/{draw_id}/verify", headers=reg)
    assert r.status_code == 200 and r.json()["ok"] is True

    r = client.post(f"/api/spot-checks/draws/{draw_id}/publish", headers=reg)
    assert r.status_code == 200 and r.json()["published_at"] is not None
    for who in (officer, other):
        r = client.get(f"/api/spot-checks/draws/{draw_id}", headers=who)
        assert r.status_code == 200 and r.json()["snapshot"] is None
        assert r.json()["results"] == d["results"]
    assert client.get(f"/api/spot-checks/draws/{draw_id}/verify", headers=other).json()["ok"]
    public = client.get("/api/spot-checks/published", headers=officer).json()
    assert [(x["project_id"], x["draw_id"]) for x in public] == [
        (x["project_id"], draw_id) for x in d["results"]
    ]
    assert set(public[0]["inspectors"][0]) == {"id", "name", "badge_no"}
    listed = client.get("/api/spot-checks/draws", headers=other).json()
    assert [x["id"] for x in listed["items"]] == [draw_id]


def test_api_inspection_findings_photos_confirmation_and_scope(
    client: TestClient, api_world: psycopg.Connection
) -> None:
    reg = login(client, "reg-chaoyang")
    r = client.post(
        "/api/spot-checks/draws",
        json={"title": "t", "projects": 3, "inspectors_per_project": 1},
        headers=reg,
    )
    draw = r.json()
    target = next(x for x in draw["results"] if x["project_id"] == "P2")
    r = client.post(
        "/api/inspections",
        json={"draw_id": draw["id"], "project_id": "P2", "inspected_on": str(TODAY)},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    ins = r.json()
    assert ins["inspectors"] == [i["id"] for i in target["inspectors"]]
    again = client.post(
        "/api/inspections",
        json={"draw_id": draw["id"], "project_id": "P2", "inspected_on": str(TODAY)},
        headers=reg,
    )
    assert again.status_code == 409
    stranger = client.post(
        "/api/inspections",
        json={
            "draw_id": draw["id"],
            "project_id": "P1",
            "inspected_on": str(TODAY),
            "inspector_ids": ["I404"],
        },
        headers=reg,
    )
    assert stranger.status_code in (404, 422)

    finding = {
        "category": "safety",
        "severity": "serious",
        "description": "edge protection missing on level 5",
        "responsible_uscc": GC2,
        "rectification": {
            "requirement": "install guard rails",
            "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        },
    }
    r = client.post(f"/api/inspections/{ins['id']}/findings", json=finding, headers=reg)
    assert r.status_code == 201, r.text
    fid = r.json()["findings"][0]["id"]
    r = client.post(
        f"/api/inspections/{ins['id']}/photos",
        files={"photo": ("a.png", PNG, "image/png")},
        data={"caption": "level 5", "finding_id": str(fid)},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    photo = r.json()
    bad = client.post(
        f"/api/inspections/{ins['id']}/photos",
        files={"photo": ("a.png", b"not an image", "image/png")},
        headers=reg,
    )
    assert bad.status_code == 415

    officer = login(client, "officer1")
    r = client.get(f"/api/inspections/{ins['id']}", headers=officer)
    assert r.status_code == 200 and r.json()["photos"][0]["finding_id"] == fid
    r = client.get(f"/api/inspections/{ins['id']}/photos/{photo['id']}", headers=officer)
    assert r.status_code == 200 and r.content == PNG
    orders = client.get("/api/rectification-orders", headers=officer).json()
    assert [o["requirement"] for o in orders] == ["install guard rails"]
    assert [i["id"] for i in client.get("/api/inspections", headers=officer).json()] == [ins["id"]]
    # the officer reads, never records or confirms
    confirm = f"/api/inspections/{ins['id']}/findings/{fid}/confirm"
    assert client.post(confirm, json={}, headers=officer).status_code == 403

    # the order's follow-up: the site reports it done, the regulator sends it back, then accepts
    order = orders[0]["id"]
    report = f"/api/rectification-orders/{order}/report"
    verify = f"/api/rectification-orders/{order}/verify"
    assert client.post(verify, json={"accept": True}, headers=reg).status_code == 409  # not yet
    r = client.post(report, json={"note": "rails fitted"}, headers=officer)
    assert r.status_code == 200 and r.json()["status"] == "reported", r.text
    assert client.post(report, json={"note": "again"}, headers=officer).status_code == 409
    assert client.post(verify, json={"accept": True}, headers=officer).status_code == 403
    r = client.post(verify, json={"accept": False, "note": "one side missing"}, headers=reg)
    assert r.json()["status"] == "open" and r.json()["verify_note"] == "one side missing"
    client.post(report, json={"note": "both sides now"}, headers=officer)
    r = client.post(verify, json={"accept": True}, headers=reg)
    assert r.json()["status"] == "done" and r.json()["verified_by"] == "reg-chaoyang"
    open_orders = client.get("/api/rectification-orders?open_only=true", headers=officer).json()
    assert open_orders == []

    for outsider in (login(client, "officer-q"), login(client, "reg-haidian")):
        assert client.get(f"/api/inspections/{ins['id']}", headers=outsider).status_code == 404
        assert client.get("/api/rectification-orders", headers=outsider).json() == []
        assert client.get("/api/inspections", headers=outsider).json() == []
        assert client.post(report, json={"note": "x"}, headers=outsider).status_code in (403, 404)
    assert client.post(confirm, json={}, headers=login(client, "reg-haidian")).status_code == 404

    r = client.post(confirm, json={"note": "contractor heard"}, headers=reg)
    assert r.status_code == 200, r.text
    assert (
        r.json()["finding"]["status"] == "confirmed" and len(r.json()["credit_records_added"]) == 1
    )
    assert client.post(confirm, json={}, headers=reg).json()["credit_records_added"] == []
    score = api_world.execute(
        "SELECT credit_score::float8 FROM enterprises WHERE uscc = %s", (GC2,)
    )
    assert score.fetchone() == (100.0 - rec.FINDING_POINTS["serious"],)


def test_api_inspectors_pool(client: TestClient, api_world: psycopg.Connection) -> None:
    reg = login(client, "reg-chaoyang")
    r = client.post(
        "/api/inspectors", json={"id": "I9", "name": "Zhao", "district_code": "110105"}, headers=reg
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/inspectors",
        json={"id": "I10", "name": "Qian", "district_code": "110108"},
        headers=reg,
    )
    assert r.status_code == 403
    r = client.post(
        "/api/inspectors/I9/affiliations",
        json={"uscc": GC2, "note": "former employer"},
        headers=reg,
    )
    assert r.status_code == 201 and r.json()["affiliations"][0]["uscc"] == GC2
    assert client.get("/api/inspectors", headers=login(client, "officer1")).status_code == 403
