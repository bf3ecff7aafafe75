"""Rules through the API: a change made over HTTP is what the running engine judges by (real
broker, real engine), the history names who changed what; scopes and roles of rule edits;
zone certificate requirements; refreshing an alert's correlation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from api_helpers import login, project, user
from conftest import wait_until
from fastapi.testclient import TestClient
from mqtt_helpers import publish_raw

from alerts import lifecycle as lc
from alerts.defaults import DEFAULT_RULES
from alerts.engine import AlertEngine
from edge.simulator import register_site
from smartsite.protocol.messages import Reading, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import Settings

SITE = "P-RULES"
GW = f"{SITE}-gw"
CRANE = f"{SITE}-towercrane-001"


def crane_spec(**levels: float) -> dict[str, Any]:
    base = next(
        d.spec.model_dump(mode="json")
        for d in DEFAULT_RULES
        if d.key == "crane_moment" and d.device_kind == "tower_crane"
    )
    base["levels"] = {
        "warning": {"value": levels["warning"]},
        "alarm": {"value": levels["alarm"]},
    }
    return base


@pytest.fixture
def engine(pg_url, broker, alert_settings, db) -> Iterator[AlertEngine]:  # type: ignore[no-untyped-def]
    register_site(pg_url, SITE, 6)
    e = AlertEngine(pg_url, broker.endpoint, alert_settings).start()
    e.wait_connected()
    yield e
    e.stop()


class Readings:
    def __init__(self, broker, settings: Settings) -> None:  # type: ignore[no-untyped-def]
        self.endpoint, self.prefix, self.seq = broker.endpoint, settings.topic_prefix, 0
        self.t = datetime.now(UTC) - timedelta(seconds=30)

    def send(self, device: str, metric: str, *values: float) -> None:
        msgs = []
        for v in values:
            self.seq += 1
            self.t = min(self.t + timedelta(seconds=0.5), datetime.now(UTC))
            msg = Telemetry(
                device=GW,
                seq=self.seq,
                ts=self.t,
                readings=[Reading(metric=metric, value=v, unit="", source=device)],
            )
            msgs.append((build(self.prefix, SITE, GW, Kind.TELEMETRY), encode(msg)))
        publish_raw(self.endpoint, msgs)


def test_a_rule_changed_through_the_api_changes_what_the_engine_does(
    client: TestClient, db: psycopg.Connection, engine: AlertEngine, broker, alert_settings
) -> None:  # type: ignore[no-untyped-def]
    user(db, "officer-rules", "officer", projects=[SITE])
    officer = login(client, "officer-rules")
    pub = Readings(broker, alert_settings)

    pub.send(CRANE, "moment_pct", 60)  # normal under the default (warning at 90 %)
    wait_until(lambda: engine.stats.received >= 1, timeout=20, what="judged")
    assert db.execute("SELECT count(*) FROM alerts").fetchone() == (0,)

    r = client.put(
        "/api/rules",
        json={
            "key": "crane_moment",
            "device_kind": "tower_crane",
            "device_id": CRANE,
            "spec": crane_spec(warning=40, alarm=50),
            "note": "new crane, derated",
        },
        headers=officer,
    )
    assert r.status_code == 200, r.text
    rule = r.json()
    assert (rule["scope"], rule["revision"], rule["updated_by"]) == ("device", 1, "officer-rules")
    # the engine picks the change up by itself (history grows → reload)
    version = db.execute("SELECT max(id) FROM alert_rule_history").fetchone()[0]
    wait_until(lambda: engine._rules_version >= version, timeout=10, what="rules reloaded")

    pub.send(CRANE, "moment_pct", 60)
    wait_until(
        lambda: db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1,
        timeout=20,
        what="the alarm under the new rule",
    )
    alerts = client.get("/api/alerts", headers=officer).json()["items"]
    assert [(a["rule"], a["level"], a["threshold"]) for a in alerts] == [
        ("crane_moment", "alarm", 50)
    ]
    detail = client.get(f"/api/alerts/{alerts[0]['id']}", headers=officer).json()
    assert detail["rule_id"] == rule["id"]

    r = client.delete(f"/api/rules/{rule['id']}?note=back%20to%20default", headers=officer)
    assert r.status_code == 200 and r.json() == {"id": rule["id"], "deleted": True}
    r = client.get("/api/rules/history?key=crane_moment", headers=officer)
    assert r.status_code == 200
    mine = [(h["operation"], h["changed_by"], h["note"]) for h in r.json() if h["device_id"]]
    assert mine == [
        ("insert", "officer-rules", "new crane, derated"),
        ("delete", "officer-rules", "back to default"),
    ]
    assert any(h["changed_by"] == "system:defaults" for h in r.json())  # the seeded default


@pytest.fixture
def world(db: psycopg.Connection, pg_url: str) -> psycopg.Connection:
    project(db, "P1", "110105")
    project(db, "P2", "110108")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "reg-chaoyang", "regulator", district_code="110105")
    user(db, "reg-city", "regulator")
    user(db, "share", "data_sharing", projects=["P1"])
    user(db, "admin1", "admin")
    return db


def _change(**kw: Any) -> dict[str, Any]:
    return {
        "key": "crane_moment",
        "device_kind": "tower_crane",
        "spec": crane_spec(warning=80, alarm=95),
        **kw,
    }


def test_who_may_change_which_rules(client: TestClient, world: psycopg.Connection) -> None:
    def put(who: str, **kw: Any) -> int:
        return client.put("/api/rules", json=_change(**kw), headers=login(client, who)).status_code

    assert put("officer1") == 403  # kind level: every project
    assert put("officer1", project_id="P1") == 200
    assert put("officer1", project_id="P2") == 404  # not theirs: as if absent
    assert put("officer1", project_id="NOPE") == 404
    assert put("reg-chaoyang") == 403  # a district regulator: not city-wide
    assert put("reg-chaoyang", project_id="P1") == 200
    assert put("reg-chaoyang", project_id="P2") == 404
    assert put("reg-city") == 200
    assert put("admin1", project_id="P2") == 200
    assert put("share", project_id="P1") == 403
    r = client.put(
        "/api/rules",
        json=_change(device_kind="hoist", project_id="P1"),
        headers=login(client, "admin1"),
    )
    assert r.status_code == 200  # any kind is fine...
    r = client.put(
        "/api/rules",
        json=_change(device_kind="spaceship"),
        headers=login(client, "admin1"),
    )
    assert r.status_code == 422  # ...but not an unknown one
    assert "unknown device kind" in r.json()["error"]["message"]

    def keys(who: str) -> set[tuple[str, str | None]]:
        r = client.get("/api/rules?key=crane_moment", headers=login(client, who))
        assert r.status_code == 200
        return {(x["scope"], x["project_id"]) for x in r.json()["items"]}

    assert keys("officer1") == {("kind", None), ("project", "P1")}
    assert keys("admin1") == {("kind", None), ("project", "P1"), ("project", "P2")}
    assert keys("reg-chaoyang") == {("kind", None), ("project", "P1")}
    r = client.get("/api/rules/history?key=crane_moment", headers=login(client, "officer1"))
    assert {h["project_id"] for h in r.json()} == {None, "P1"}
    assert {h["changed_by"] for h in r.json() if h["project_id"] == "P1"} == {
        "officer1",
        "reg-chaoyang",
        "admin1",
    }

    p2_rule = world.execute(
        "SELECT id FROM alert_rules WHERE project_id = 'P2' AND device_kind = 'tower_crane'"
    ).fetchone()[0]
    officer = login(client, "officer1")
    assert client.delete(f"/api/rules/{p2_rule}", headers=officer).status_code == 404
    kind_rule = world.execute(
        "SELECT id FROM alert_rules WHERE project_id IS NULL AND device_id IS NULL"
    ).fetchone()[0]
    assert client.delete(f"/api/rules/{kind_rule}", headers=officer).status_code == 403
    assert client.delete("/api/rules/999999", headers=officer).status_code == 404


def test_zone_certificate_requirements(client: TestClient, world: psycopg.Connection) -> None:
    officer = login(client, "officer1")
    url = "/api/projects/P1/zone-requirements"
    assert client.get(url, headers=officer).json() == []
    body = [
        {"zone": "crane", "certificate_type": "special_operations:tower_crane"},
        {"zone": "crane", "certificate_type": "special_operations:signaller"},
        {"zone": "pit", "certificate_type": "special_operations:excavation"},
    ]
    r = client.put(url, json=body, headers=officer)
    assert r.status_code == 200
    assert len(r.json()) == 3
    r = client.delete(
        f"{url}?zone=crane&certificate_type=special_operations:signaller", headers=officer
    )
    assert [x["certificate_type"] for x in r.json()] == [
        "special_operations:tower_crane",
        "special_operations:excavation",
    ]
    r = client.delete(f"{url}?zone=pit", headers=officer)
    assert r.json() == [{"zone": "crane", "certificate_type": "special_operations:tower_crane"}]
    assert client.get(url, headers=login(client, "share")).status_code == 200
    assert client.put(url, json=[], headers=login(client, "share")).status_code == 403
    other = "/api/projects/P2/zone-requirements"
    assert client.get(other, headers=officer).status_code == 404
    assert client.put(other, json=[], headers=officer).status_code == 404


def test_correlation_refresh_follows_the_registry(
    client: TestClient, world: psycopg.Connection
) -> None:
    aid = uuid.uuid4()
    now = datetime.now(UTC)
    own = [{"factor": "level", "value": "warning", "points": 30, "note": "预警 warning"}]
    world.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity,"
        " target, title, priority, factors) VALUES (%s, %s, 'P1', 'dev-1', 'hub',"
        " 'crane_moment', 'warning', 'moment_pct', 't', 30, %s::jsonb)",
        (aid, now, psycopg.types.json.Jsonb(own)),
    )
    lc.record(world, aid, "P1", None, lc.Status.OPEN, "alert-engine", "system", now)
    officer = login(client, "officer1")

    r = client.post(f"/api/alerts/{aid}/correlate", headers=officer)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["unpermitted_work"] is True and d["level"] == "alarm"
    assert d["correlation"]["permit"]["state"] == "missing"
    assert [f["factor"] for f in d["factors"]] == ["level", "unpermitted_work", "level_raised"]
    assert d["priority"] == sum(f["points"] for f in d["factors"])

    world.execute(
        "INSERT INTO permits (number, project_id, issued_on) VALUES ('PERMIT-P1', 'P1', %s)",
        (date.today() - timedelta(days=5),),
    )
    d = client.post(f"/api/alerts/{aid}/correlate", headers=officer).json()
    assert d["unpermitted_work"] is False and d["level"] == "warning"
    assert d["factors"] == own and d["priority"] == 30
    assert (
        client.post(f"/api/alerts/{aid}/correlate", headers=login(client, "share")).status_code
        == 403
    )
    user(world, "officer2", "officer", projects=["P2"])
    r = client.post(f"/api/alerts/{aid}/correlate", headers=login(client, "officer2"))
    assert r.status_code == 404
