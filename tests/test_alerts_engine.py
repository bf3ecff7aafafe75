"""The alert engine on the real database and a real mosquitto: telemetry and edge alerts
through the rules into alerts — levels, escalation, sustain, auto-clear, silence, repeat,
the regulator, dedupe, rule changes at run time, and restarts that neither duplicate nor lose.

Times are small here because they are data: each test puts the rules it needs into the
database (device scope), as an administrator would."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import count, wait_until
from mqtt_helpers import publish_raw

from alerts import lifecycle as lc
from alerts.defaults import DEFAULT_RULES
from alerts.engine import AlertEngine
from alerts.rule_store import RuleChange, put_rule
from alerts.rules import Levels, Limit, RuleKind, RuleSpec
from edge.simulator import register_site
from smartsite.db.registry import PermitIn, upsert_permit
from smartsite.protocol.messages import EdgeAlert, Reading, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import Settings

PROJECT = "P-ALERTS"
GW = f"{PROJECT}-gw"
CRANE = f"{PROJECT}-towercrane-001"
DUST = f"{PROJECT}-dust-005"
CAM = GW  # edge alerts come from the gateway's camera agent here


@pytest.fixture
def site(db, pg_url):  # type: ignore[no-untyped-def]
    register_site(pg_url, PROJECT, 6)
    # A valid permit: without one every alert is unpermitted work and raised to alarm
    # (tests/test_alerts_correlation.py); these tests are about the rules themselves.
    upsert_permit(
        db, PermitIn(number="PERMIT-ALERTS-1", project_id=PROJECT, issued_on=date(2020, 1, 1))
    )
    return db


@pytest.fixture
def start_engine(pg_url, broker, alert_settings) -> Iterator[Callable[..., AlertEngine]]:  # type: ignore[no-untyped-def]
    started: list[AlertEngine] = []

    def start(**kw) -> AlertEngine:  # type: ignore[no-untyped-def]
        e = AlertEngine(pg_url, broker.endpoint, alert_settings, **kw).start()
        e.wait_connected()
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


def rule(db, key: str, kind: str, device: str, **spec) -> None:  # type: ignore[no-untyped-def]
    """Put a device-scoped rule: the default of that key and kind with ``spec`` changed."""
    base = next(
        d.spec.model_dump() for d in DEFAULT_RULES if d.key == key and d.device_kind == kind
    )
    base.update(spec)
    put_rule(
        db,
        RuleChange(key=key, device_kind=kind, device_id=device, spec=RuleSpec(**base)),
        by="test-admin",
    )


class Site:
    """Publishes as the gateway: readings of the devices behind it, edge alerts."""

    def __init__(self, broker, settings: Settings) -> None:  # type: ignore[no-untyped-def]
        self.endpoint = broker.endpoint
        self.prefix = settings.topic_prefix
        self.seq = 0
        self.t = datetime.now(UTC) - timedelta(seconds=30)

    def _next(self, dt: float) -> datetime:
        self.t += timedelta(seconds=dt)
        return min(self.t, datetime.now(UTC))

    def readings(self, device: str, metric: str, values: list[float], dt: float = 0.5) -> None:
        msgs = []
        for v in values:
            self.seq += 1
            msg = Telemetry(
                device=GW,
                seq=self.seq,
                ts=self._next(dt),
                readings=[Reading(metric=metric, value=v, unit="", source=device)],
            )
            msgs.append((build(self.prefix, PROJECT, GW, Kind.TELEMETRY), encode(msg)))
        publish_raw(self.endpoint, msgs)

    def edge(self, rule: str, zone: str | None, n: int = 1, severity: str = "warning") -> None:
        msgs = []
        for _ in range(n):
            self.seq += 1
            msg = EdgeAlert(
                device=CAM,
                seq=self.seq,
                ts=self._next(0.2),
                rule=rule,
                severity=severity,
                camera="cam-1",
                zone=zone,
                evidence_id=f"ev-{self.seq}",
                detail="worker without hard hat",
            )
            msgs.append((build(self.prefix, PROJECT, CAM, Kind.ALERT), encode(msg)))
        publish_raw(self.endpoint, msgs)


@pytest.fixture
def pub(broker, alert_settings) -> Site:  # type: ignore[no-untyped-def]
    return Site(broker, alert_settings)


def alerts_of(db, device: str | None = None) -> list[tuple]:  # type: ignore[no-untyped-def]
    return db.execute(
        "SELECT rule, target, severity, status, cleared_at IS NOT NULL, occurrences "
        "FROM alerts WHERE %s::text IS NULL OR device_id = %s ORDER BY created_at",
        (device, device),
    ).fetchall()


def judged(engine: AlertEngine, n: int) -> None:
    """Wait until the engine has committed ``n`` messages in all."""
    wait_until(lambda: engine.stats.received >= n, timeout=20, what=f"{n} messages judged")


def test_warning_then_alarm_is_one_alert_escalated(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    pub.readings(CRANE, "moment_pct", [60, 85, 92, 95, 97])
    wait_until(lambda: alerts_of(site) != [], what="a warning")
    pub.readings(CRANE, "moment_pct", [101, 104, 99, 93])
    judged(engine, 9)
    assert alerts_of(site) == [("crane_moment", "moment_pct", "alarm", "open", False, 7)]
    a = site.execute(
        "SELECT id, source, threshold, last_value, worst_value, priority, factors, rule_id, "
        "rule_revision, title FROM alerts"
    ).fetchone()
    alert_id, source, threshold, last, worst, priority, factors, rule_id, revision, title = a
    assert source == "hub" and threshold == 100 and last == 93 and worst == 104
    assert [f["factor"] for f in factors][:2] == ["level", "exceedance"]
    assert priority == 61  # alarm 60 + 1 % past the level when it escalated (101)
    assert rule_id is not None and revision == 1 and "tower-crane" in title
    assert [r[0] for r in site.execute("SELECT action FROM alert_outbox ORDER BY id")] == [
        "open",
        "escalate",
    ]
    assert [(t.from_status, t.to_status, t.actor) for t in lc.history(site, alert_id)] == [
        (None, lc.Status.OPEN, "alert-engine")
    ]
    st = site.execute(
        "SELECT state->>'level', alert_id FROM alert_state WHERE rule = 'crane_moment'"
    ).fetchall()
    assert st == [("alarm", alert_id)]


def test_sustained_condition(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    rule(site, "crane_tilt", "tower_crane", CRANE, sustain_s=2.0)
    engine = start_engine()
    pub.readings(CRANE, "tilt_deg", [0.5, 0.5, 0.5, 0.5], dt=0.5)  # held 1.5 s
    judged(engine, 4)
    assert alerts_of(site) == []
    pub.readings(CRANE, "tilt_deg", [0.1, 0.5, 0.5, 0.5, 0.5], dt=0.5)  # a dip restarts it
    judged(engine, 9)
    assert alerts_of(site) == []
    pub.readings(CRANE, "tilt_deg", [0.5], dt=0.5)  # now held 2 s
    wait_until(lambda: alerts_of(site) != [], what="the sustained alert")
    assert alerts_of(site) == [("crane_tilt", "tilt_deg", "alarm", "open", False, 1)]


def test_back_to_normal_auto_clears_and_a_new_excursion_is_a_new_alert(
    site, pub, start_engine
) -> None:  # type: ignore[no-untyped-def]
    rule(site, "crane_moment", "tower_crane", CRANE, auto_clear_s=1.0)
    start_engine()
    pub.readings(CRANE, "moment_pct", [101])
    wait_until(lambda: alerts_of(site) != [], what="an alarm")
    pub.readings(CRANE, "moment_pct", [50])  # then readings stop: the clock clears it
    wait_until(lambda: alerts_of(site)[0][4], timeout=10, what="auto-clear")
    reason = site.execute("SELECT clear_reason FROM alerts").fetchone()[0]
    assert reason == "back to normal for 1 s"
    pub.readings(CRANE, "moment_pct", [95])
    wait_until(lambda: len(alerts_of(site)) == 2, what="the next alert")
    assert [a[2:5] for a in alerts_of(site)] == [
        ("alarm", "open", True),
        ("warning", "open", False),
    ]


def test_silent_device_alerts_escalates_and_clears_when_heard(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    rule(
        site,
        "device_silent",
        "dust",
        DUST,
        levels=Levels(warning=Limit(value=1.0), alarm=Limit(value=2.0)),
    )
    start_engine()
    pub.t = datetime.now(UTC) - timedelta(seconds=0.1)  # silence counts from the reading's time
    pub.readings(DUST, "pm10", [40], dt=0)
    wait_until(lambda: alerts_of(site) != [], timeout=10, what="silence warning")
    assert alerts_of(site)[0][:3] == ("device_silent", "", "warning")
    wait_until(lambda: alerts_of(site)[0][2] == "alarm", timeout=10, what="silence alarm")
    pub.t = datetime.now(UTC) - timedelta(seconds=0.1)
    pub.readings(DUST, "pm10", [41], dt=0)
    wait_until(lambda: alerts_of(site)[0][4], timeout=10, what="cleared when heard")
    assert len(alerts_of(site)) == 1
    assert site.execute("SELECT clear_reason, unit FROM alerts").fetchone() == (
        "back to normal for 0 s",
        "s",
    )


def test_edge_alerts_dedupe_per_camera_zone(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    pub.edge("no_hard_hat", "pit", n=5)
    pub.edge("no_hard_hat", "gate", n=2)
    pub.edge("fall", "pit", n=1, severity="alarm")
    judged(engine, 8)
    wait_until(lambda: len(alerts_of(site)) == 3, what="three alerts")
    rows = {(a[0], a[1]): a for a in alerts_of(site)}
    assert rows[("no_hard_hat", "cam-1/pit")][2:] == ("warning", "open", False, 5)
    assert rows[("no_hard_hat", "cam-1/gate")][2:] == ("warning", "open", False, 2)
    assert rows[("fall", "cam-1/pit")][2:] == ("alarm", "open", False, 1)
    row = site.execute(
        "SELECT source, camera, zone, evidence_id, detail FROM alerts "
        "WHERE target = 'cam-1/pit' AND rule = 'no_hard_hat'"
    ).fetchone()
    assert row == ("edge", "cam-1", "pit", "ev-1", "worker without hard hat")


def test_repeat_and_regulator_until_acknowledged(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    rule(
        site,
        "crane_moment",
        "tower_crane",
        CRANE,
        repeat_every_s=0.3,
        regulator_after_s=0.5,
        auto_clear_s=600.0,
    )
    start_engine()
    pub.t = datetime.now(UTC) - timedelta(seconds=0.1)
    pub.readings(CRANE, "moment_pct", [103], dt=0)

    def actions() -> list[str]:
        return [r[0] for r in site.execute("SELECT action FROM alert_outbox ORDER BY id")]

    wait_until(lambda: "regulator" in actions() and actions().count("repeat") >= 2, timeout=10)
    regulator = site.execute(
        "SELECT audience FROM alert_outbox WHERE action = 'regulator'"
    ).fetchall()
    assert regulator == [("regulator",)]
    alert_id = site.execute("SELECT id FROM alerts").fetchone()[0]
    lc.acknowledge(site, alert_id, by=lc.Actor(name="wang", role="officer"))
    repeats = actions().count("repeat")
    wait_until(lambda: actions()[-1] == "transition", what="the acknowledgement")
    import time

    time.sleep(1.0)  # three repeat periods: none may come now
    assert actions().count("repeat") <= repeats + 1  # one may have been in flight
    assert actions().count("regulator") == 1
    n, notified = site.execute(
        "SELECT notify_count, regulator_notified_at IS NOT NULL FROM alerts"
    ).fetchone()
    assert n >= 3 and notified


def test_rule_changes_take_effect_at_run_time(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    pub.readings(DUST, "pm10", [70, 70])
    judged(engine, 2)
    assert alerts_of(site) == []
    rule(site, "pm10", "dust", DUST, levels=Levels(alarm=Limit(value=60.0)), sustain_s=0.0)
    wait_until(
        lambda: engine._rules_version == count(site, "SELECT max(id) FROM alert_rule_history"),
        what="rules reloaded",
    )
    pub.readings(DUST, "pm10", [70])
    wait_until(lambda: alerts_of(site) != [], what="the alert under the new rule")
    assert alerts_of(site)[0][:3] == ("pm10", "pm10", "alarm")
    assert site.execute("SELECT rule_revision FROM alerts").fetchone() == (1,)


def test_disabling_a_rule_clears_its_active_alerts(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    start_engine()
    pub.readings(CRANE, "moment_pct", [101])
    wait_until(lambda: alerts_of(site) != [], what="an alarm")
    rule(site, "crane_moment", "tower_crane", CRANE)  # a device override ...
    site.execute(
        "UPDATE alert_rules SET enabled = false, updated_by = 'admin' WHERE scope = 'device'"
    )
    wait_until(lambda: alerts_of(site)[0][4], timeout=10, what="cleared")  # ... switched off
    assert site.execute("SELECT clear_reason FROM alerts").fetchone() == (
        "rule removed or disabled for this device",
    )
    history = site.execute(
        "SELECT operation, revision, changed_by FROM alert_rule_history "
        "WHERE device_id IS NOT NULL ORDER BY id"
    ).fetchall()
    assert history == [("insert", 1, "test-admin"), ("update", 2, "admin")]


def test_restart_neither_duplicates_nor_loses(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    first = start_engine()
    pub.readings(CRANE, "moment_pct", [92, 93])
    wait_until(lambda: alerts_of(site) != [], what="a warning")
    first.stop()
    # while the engine is away the broker keeps its session's messages
    pub.readings(CRANE, "moment_pct", [105, 106])
    pub.edge("no_hard_hat", "pit", n=3)
    second = start_engine()
    wait_until(lambda: len(alerts_of(site)) == 2, what="the queued messages judged")
    judged(second, 5)
    assert sorted(alerts_of(site)) == [
        ("crane_moment", "moment_pct", "alarm", "open", False, 4),
        ("no_hard_hat", "cam-1/pit", "warning", "open", False, 3),
    ]
    assert count(site, "SELECT count(*) FROM alert_transitions") == 2
    assert count(site, "SELECT count(*) FROM alert_outbox WHERE action = 'open'") == 2


def test_crash_between_commit_and_ack_is_redelivered_without_duplicates(
    site, pub, start_engine
) -> None:  # type: ignore[no-untyped-def]
    first = start_engine()
    first._crash_after_commit = True
    pub.readings(CRANE, "moment_pct", [101, 102])
    pub.edge("no_hard_hat", "pit", n=2)
    wait_until(lambda: len(alerts_of(site)) >= 1, what="committed")
    wait_until(lambda: not first._thread.is_alive(), what="the crash")
    committed = first.stats.received
    assert committed > 0
    first.stop()  # nothing acknowledged: the broker redelivers it all to the next session
    second = start_engine()
    judged(second, 4)  # all four again: the committed ones too, since none was acknowledged
    wait_until(lambda: len(alerts_of(site)) == 2, what="everything judged")
    assert sorted(alerts_of(site)) == [
        ("crane_moment", "moment_pct", "alarm", "open", False, 2),
        ("no_hard_hat", "cam-1/pit", "warning", "open", False, 2),
    ]
    assert count(site, "SELECT count(*) FROM alert_outbox WHERE action = 'open'") == 2


def test_an_active_alert_in_the_database_is_adopted_not_duplicated(site, pub, start_engine) -> None:  # type: ignore[no-untyped-def]
    existing = uuid.uuid4()
    site.execute(
        "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity, "
        "target) VALUES (%s, now(), %s, %s, 'hub', 'crane_moment', 'warning', 'moment_pct')",
        (existing, PROJECT, CRANE),
    )
    engine = start_engine()  # no state for it: as if alert_state had been lost
    pub.readings(CRANE, "moment_pct", [101])
    judged(engine, 1)
    wait_until(lambda: alerts_of(site)[0][2] == "alarm", what="adopted and raised")
    assert count(site, "SELECT count(*) FROM alerts") == 1
    assert site.execute("SELECT alert_id FROM alert_state").fetchone() == (existing,)


def test_unknown_devices_and_bad_input_are_ignored(site, pub, start_engine, broker) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    publish_raw(
        broker.endpoint,
        [
            (build(pub.prefix, PROJECT, GW, Kind.TELEMETRY), b"{not json"),
            (
                build(pub.prefix, PROJECT, "ghost", Kind.TELEMETRY),
                encode(
                    Telemetry(
                        device="ghost",
                        seq=1,
                        readings=[Reading(metric="moment_pct", value=200, unit="%")],
                    )
                ),
            ),
        ],
    )
    pub.readings(CRANE, "moment_pct", [101])
    judged(engine, 3)
    wait_until(lambda: len(alerts_of(site)) == 1, what="the good one")
    assert engine.stats.ignored["invalid"] == 1 and engine.stats.ignored["unknown_device"] == 1


def test_rules_with_edge_kind_need_an_edge_key(site) -> None:  # type: ignore[no-untyped-def]
    from alerts.rule_store import RuleError

    with pytest.raises(RuleError, match="edge rule's key"):
        put_rule(
            site,
            RuleChange(
                key="crane_moment",
                device_kind="*",
                spec=RuleSpec(kind=RuleKind.EDGE, title="x"),
            ),
            by="t",
        )
    with pytest.raises(RuleError, match="is a tower_crane, not a dust"):
        put_rule(
            site,
            RuleChange(
                key="pm10",
                device_kind="dust",
                device_id=CRANE,
                spec=RuleSpec(
                    kind=RuleKind.THRESHOLD,
                    title="x",
                    metric="pm10",
                    levels=Levels(alarm=Limit(value=1)),
                ),
            ),
            by="t",
        )
