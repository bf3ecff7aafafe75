"""Rule evaluation as pure functions: levels, sustain, rate, day/night, silence, edge,
repeat and regulator, dedupe of flapping readings; rules and their scopes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alerts import evaluate as ev
from alerts.defaults import DEFAULT_RULES, NOISE, PIT_DISPLACEMENT
from alerts.evaluate import Act, TargetState
from alerts.rules import (
    Device,
    Direction,
    Level,
    Levels,
    Limit,
    Rate,
    RuleBook,
    RuleKind,
    RuleRow,
    RuleSpec,
    Window,
    effective_rules,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: daytime


def spec(**kw) -> RuleSpec:  # type: ignore[no-untyped-def]
    base = {
        "kind": RuleKind.THRESHOLD,
        "title": "moment",
        "metric": "moment_pct",
        "unit": "%",
        "levels": Levels(warning=Limit(value=90), alarm=Limit(value=100)),
        "auto_clear_s": 30.0,
    }
    base.update(kw)
    return RuleSpec(**base)


def feed(
    rule: RuleSpec,
    values: list[tuple[float, float]],
    state: TargetState | None = None,
    rated: dict[str, float] | None = None,
    tz=SHANGHAI,
):  # type: ignore[no-untyped-def]
    """Observe (seconds after T0, value) pairs; return the final state and every action."""
    s = state or TargetState()
    acts: list[ev.Action] = []
    for t, v in values:
        out = ev.observe_value(rule, s, v, T0 + timedelta(seconds=t), rated or {}, tz)
        s = out.state
        acts.extend(out.actions)
    return s, acts


# --- levels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "direction", "expected"),
    [
        (89.9, Direction.ABOVE, Level.NORMAL),
        (90.0, Direction.ABOVE, Level.WARNING),  # reaching a level counts
        (99.99, Direction.ABOVE, Level.WARNING),
        (100.0, Direction.ABOVE, Level.ALARM),
        (250.0, Direction.ABOVE, Level.ALARM),
        (20.0, Direction.BELOW, Level.ALARM),
        (25.0, Direction.BELOW, Level.WARNING),
        (30.1, Direction.BELOW, Level.NORMAL),
    ],
)
def test_classify(value: float, direction: Direction, expected: Level) -> None:
    limits = (
        ev.Limits(warning=90, alarm=100)
        if direction is Direction.ABOVE
        else ev.Limits(warning=30, alarm=20)
    )
    assert ev.classify(value, limits, direction) is expected


@pytest.mark.parametrize(
    ("rated", "alarm", "warning"),
    [
        ({"depth_m": 12.0}, 30.0, 24.0),  # 0.3 % of 12 m = 36 mm > 30 mm: 30 governs
        ({"depth_m": 8.0}, 24.0, 19.2),  # 0.3 % of 8 m = 24 mm < 30 mm: 24 governs
        ({}, 30.0, 24.0),  # no depth on record: the absolute value alone
    ],
)
def test_pit_alarm_is_the_smaller_of_30_mm_and_03_percent_of_depth(
    rated: dict[str, float], alarm: float, warning: float
) -> None:
    lim = ev.limits_for(PIT_DISPLACEMENT, rated, T0, SHANGHAI)
    assert lim.alarm == pytest.approx(alarm)
    assert lim.warning == pytest.approx(warning)
    if rated:
        assert "depth_m" in lim.explain


def test_rated_only_limit_without_the_rated_value_is_inactive() -> None:
    rule = spec(levels=Levels(alarm=Limit(rated="moment_tm", factor=1.0), warning_fraction=0.9))
    assert ev.limits_for(rule, {}, T0, SHANGHAI).alarm is None
    s, acts = feed(rule, [(0, 1e6)])
    assert acts == [] and not s.active
    s, acts = feed(rule, [(0, 170.0)], rated={"moment_tm": 180.0})
    assert [a.act for a in acts] == [Act.OPEN] and acts[0].level is Level.WARNING


def test_warning_then_alarm_is_one_alert_escalated_then_cleared() -> None:
    s, acts = feed(spec(), [(0, 85), (1, 92), (2, 95), (3, 101), (4, 96), (5, 80), (20, 70)])
    assert [(a.act, a.level) for a in acts] == [
        (Act.OPEN, Level.WARNING),
        (Act.ESCALATE, Level.ALARM),
    ]
    assert acts[0].value == 92 and acts[0].threshold == 90
    assert acts[1].value == 101 and acts[1].threshold == 100
    assert s.level is Level.ALARM and s.worst == 101 and s.occurrences == 4  # 92 95 101 96
    assert s.normal_since == T0 + timedelta(seconds=5)
    s, acts = feed(spec(), [(35, 70)], s)  # 30 s back to normal: cleared
    assert [a.act for a in acts] == [Act.CLEAR] and not s.active


def test_flapping_readings_stay_one_alert() -> None:
    values = [(t, 101 if t % 2 == 0 else 50) for t in range(20)]
    s, acts = feed(spec(), values)
    assert [a.act for a in acts] == [Act.OPEN]
    assert s.active and s.normal_since == T0 + timedelta(seconds=19)


def test_level_never_falls_while_active() -> None:
    s, acts = feed(spec(), [(0, 105), (1, 93), (2, 91)])
    assert [a.act for a in acts] == [Act.OPEN] and s.level is Level.ALARM


def test_stale_and_duplicate_readings_are_ignored() -> None:
    s, _ = feed(spec(), [(10, 95)])
    for t, v in [(10, 120), (5, 120)]:  # a redelivery, an older reading
        out = ev.observe_value(spec(), s, v, T0 + timedelta(seconds=t), {}, SHANGHAI)
        assert out.actions == () and out.state is s


def test_priority_factors_explain_the_level() -> None:
    _, acts = feed(spec(), [(0, 110)])
    (a,) = acts
    names = [f.factor for f in a.factors]
    assert names[:2] == ["level", "exceedance"]
    assert a.factors[0].points == ev.LEVEL_POINTS[Level.ALARM]
    assert a.factors[1].value == pytest.approx(1.1)
    assert a.factors[1].points == 10
    assert a.priority == 70
    assert "110 % reached the alarm level 100 %" in a.factors[1].note


# --- sustain, escalation after a time, rate ---------------------------------------------------


@pytest.mark.parametrize(
    ("values", "opens_at"),
    [
        ([(0, 95), (10, 95), (20, 95), (29, 95)], None),  # not yet 30 s
        ([(0, 95), (10, 95), (20, 95), (30, 95)], 30),
        ([(0, 95), (10, 95), (15, 50), (20, 95), (40, 95), (50, 95)], 50),  # a dip restarts
        ([(0, 95), (30, 101)], 30),  # warning held 30 s, alarm just begun: opens as warning
    ],
)
def test_sustain(values: list[tuple[float, float]], opens_at: float | None) -> None:
    s, acts = feed(spec(sustain_s=30), values)
    opened = [a for a in acts if a.act is Act.OPEN]
    if opens_at is None:
        assert opened == [] and not s.active and s.warning_since == T0
    else:
        assert len(opened) == 1 and opened[0].at == T0 + timedelta(seconds=opens_at)
        assert opened[0].level is Level.WARNING


def test_sustained_alarm_escalates_once_it_has_held() -> None:
    _, acts = feed(spec(sustain_s=30), [(0, 95), (30, 101), (45, 101), (60, 101)])
    assert [(a.act, a.at) for a in acts] == [
        (Act.OPEN, T0 + timedelta(seconds=30)),
        (Act.ESCALATE, T0 + timedelta(seconds=60)),
    ]


def test_persisting_warning_escalates_after_the_set_time() -> None:
    _, acts = feed(spec(escalate_after_s=60), [(0, 92), (30, 93), (59, 94), (60, 94), (90, 94)])
    assert [(a.act, a.level) for a in acts] == [
        (Act.OPEN, Level.WARNING),
        (Act.ESCALATE, Level.ALARM),
    ]
    assert acts[1].at == T0 + timedelta(seconds=60)
    assert "persisted" in [f.factor for f in acts[1].factors]


RATE = spec(
    kind=RuleKind.RATE,
    metric="p*_displacement_mm",
    unit="mm/d",
    levels=Levels(alarm=Limit(value=3.0), warning_fraction=0.8),
    rate=Rate(window_s=86400, per_s=86400, min_span_s=6 * 3600),
    auto_clear_s=3600,
)


@pytest.mark.parametrize(
    ("mm_per_hour", "level"),
    [(0.05, None), (0.11, Level.WARNING), (0.2, Level.ALARM)],  # 1.2, 2.64, 4.8 mm/d
)
def test_rate_of_change_per_day(mm_per_hour: float, level: Level | None) -> None:
    values = [(h * 3600.0, 10 + mm_per_hour * h) for h in range(0, 13)]
    s, acts = feed(RATE, values)
    if level is None:
        assert acts == []
    else:
        assert [a.act for a in acts] == [Act.OPEN] and acts[0].level is level
        assert acts[0].at == T0 + timedelta(hours=6)  # not before min_span_s of history
        assert acts[0].value == pytest.approx(mm_per_hour * 24)
    assert 1 <= len(s.samples) <= RATE.rate.samples + 1  # type: ignore[union-attr]


def test_rate_keeps_a_bounded_sample_window() -> None:
    values = [(m * 60.0, 10.0) for m in range(0, 3 * 24 * 60, 7)]  # three days, every 7 min
    s, _ = feed(RATE, values)
    assert len(s.samples) <= 33
    assert (s.last_time - s.samples[0][0]).total_seconds() <= 86400  # type: ignore[operator]


# --- day and night --------------------------------------------------------------------------


def shanghai(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2025, 6, 2, hh, mm, ss, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ((21, 59, 59), Level.NORMAL),  # day: 60 dB(A) is under 65 / 70
        ((22, 0, 0), Level.ALARM),  # night from 22:00: 60 is over 55
        ((3, 0, 0), Level.ALARM),
        ((5, 59, 59), Level.ALARM),
        ((6, 0, 0), Level.NORMAL),  # day from 06:00
    ],
)
def test_noise_day_night_boundary_in_project_local_time(
    local: tuple[int, int, int], expected: Level
) -> None:
    at = shanghai(*local)
    lim = ev.limits_for(NOISE, {}, at, SHANGHAI)
    assert ev.classify(60.0, lim, Direction.ABOVE) is expected
    assert (lim.window == "night") is (expected is Level.ALARM)


def test_time_zone_is_configurable() -> None:
    at = shanghai(22, 30)  # 14:30 UTC
    assert ev.limits_for(NOISE, {}, at, SHANGHAI).alarm == 55
    assert ev.limits_for(NOISE, {}, at, ZoneInfo("UTC")).alarm == 70


def test_window_within_a_day() -> None:
    w = Window(name="lunch", start=time(12), end=time(13), levels=Levels(alarm=Limit(value=1)))
    assert w.contains(time(12)) and w.contains(time(12, 59)) and not w.contains(time(13))


# --- the clock: silence, auto-clear, repeat, regulator -----------------------------------------

SILENCE = RuleSpec(
    kind=RuleKind.SILENCE,
    title="silent",
    unit="s",
    levels=Levels(warning=Limit(value=300), alarm=Limit(value=1200)),
    auto_clear_s=0,
)


def test_silent_device_warns_then_alarms_then_clears_when_heard() -> None:
    s = ev.observe_heard(SILENCE, TargetState(), T0).state
    assert ev.tick(SILENCE, s, T0 + timedelta(seconds=299)).actions == ()
    out = ev.tick(SILENCE, s, T0 + timedelta(seconds=300))
    assert [(a.act, a.level) for a in out.actions] == [(Act.OPEN, Level.WARNING)]
    s = out.state
    assert ev.tick(SILENCE, s, T0 + timedelta(seconds=600), "open").actions == ()
    out = ev.tick(SILENCE, s, T0 + timedelta(seconds=1200), "open")
    assert [(a.act, a.level) for a in out.actions] == [(Act.ESCALATE, Level.ALARM)]
    out = ev.observe_heard(SILENCE, out.state, T0 + timedelta(seconds=1300))
    assert [a.act for a in out.actions] == [Act.CLEAR] and not out.state.active


def test_never_heard_is_not_silent() -> None:
    assert ev.tick(SILENCE, TargetState(), T0 + timedelta(days=9)).actions == ()


def test_auto_clear_by_the_clock_when_readings_stop() -> None:
    s, _ = feed(spec(), [(0, 101), (5, 50)])
    assert ev.tick(spec(), s, T0 + timedelta(seconds=34), "open").actions == ()
    out = ev.tick(spec(), s, T0 + timedelta(seconds=35), "open")
    assert [a.act for a in out.actions] == [Act.CLEAR]
    assert "back to normal for 30 s" in out.actions[0].reason


@pytest.mark.parametrize(
    ("status", "repeats"), [("open", 3), ("acknowledged", 0), ("rectifying", 0)]
)
def test_repeat_while_unacknowledged(status: str, repeats: int) -> None:
    rule = spec(repeat_every_s=60)
    s, _ = feed(rule, [(0, 101)])
    n = 0
    for t in range(1, 200):
        out = ev.tick(rule, s, T0 + timedelta(seconds=t), status)
        s = out.state
        n += sum(a.act is Act.REPEAT for a in out.actions)
    assert n == repeats


@pytest.mark.parametrize(
    ("first", "status", "told"),
    [(101, "open", True), (92, "open", False), (101, "acknowledged", False)],
)
def test_regulator_told_once_of_unacknowledged_alarms(
    first: float, status: str, told: bool
) -> None:
    rule = spec(regulator_after_s=600)
    s, _ = feed(rule, [(0, first)])
    acts = []
    for t in (599, 600, 601, 2000):
        out = ev.tick(rule, s, T0 + timedelta(seconds=t), status)
        s = out.state
        acts += [a for a in out.actions if a.act is Act.REGULATOR]
    assert len(acts) == (1 if told else 0)
    if told:
        assert acts[0].at == T0 + timedelta(seconds=600)


# --- edge-judged alerts ---------------------------------------------------------------------

EDGE = RuleSpec(kind=RuleKind.EDGE, title="no hard hat", auto_clear_s=300, escalate_after_s=600)


def edge(times_levels: list[tuple[float, Level]], s: TargetState | None = None):  # type: ignore[no-untyped-def]
    s = s or TargetState()
    acts: list[ev.Action] = []
    for t, lvl in times_levels:
        out = ev.observe_edge(EDGE, s, lvl, T0 + timedelta(seconds=t), "in pit")
        s = out.state
        acts += out.actions
    return s, acts


def test_edge_alerts_fold_into_one_and_escalate_when_they_persist() -> None:
    s, acts = edge([(t, Level.WARNING) for t in range(0, 700, 60)])
    assert [(a.act, a.level) for a in acts] == [
        (Act.OPEN, Level.WARNING),
        (Act.ESCALATE, Level.ALARM),
    ]
    assert acts[1].at == T0 + timedelta(seconds=600)
    assert s.occurrences == 12
    assert acts[0].factors[-1].factor == "edge"


def test_edge_alert_clears_when_not_repeated_and_a_lapse_restarts_escalation() -> None:
    s, _ = edge([(0, Level.WARNING), (200, Level.WARNING)])
    assert ev.tick(EDGE, s, T0 + timedelta(seconds=499), "open").actions == ()
    out = ev.tick(EDGE, s, T0 + timedelta(seconds=500), "open")
    assert [a.act for a in out.actions] == [Act.CLEAR]
    # the next one is a new alert, and its escalation clock starts again
    s, acts = edge([(900, Level.WARNING), (1400, Level.WARNING)], out.state)
    assert [a.act for a in acts] == [Act.OPEN]


def test_edge_alarm_opens_as_alarm() -> None:
    _, acts = edge([(0, Level.ALARM)])
    assert [(a.act, a.level) for a in acts] == [(Act.OPEN, Level.ALARM)]


def test_retire_clears_an_active_state() -> None:
    s, _ = feed(spec(), [(0, 101)])
    out = ev.retire(s, T0, "rule removed")
    assert [a.act for a in out.actions] == [Act.CLEAR] and not out.state.active
    assert ev.retire(out.state, T0, "again").actions == ()


def test_state_survives_json() -> None:
    s, _ = feed(RATE, [(h * 3600.0, 10 + 0.2 * h) for h in range(0, 8)])
    assert s.active and s.samples
    assert ev.state_from_json(ev.state_to_json(s)) == s
    assert ev.state_from_json({}) == TargetState()


# --- rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"metric": None}, "needs a metric"),
        ({"levels": None}, "needs levels"),
        ({"kind": RuleKind.RATE}, "rate rules need them"),
        ({"kind": RuleKind.EDGE, "metric": None}, "no levels"),
        ({"kind": RuleKind.SILENCE}, "watches no metric"),
        ({"levels": Levels(alarm=Limit(value=1), warning_fraction=1.2)}, "before the alarm"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_rules_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**kw)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "a value, a rated key, or both"),
        ({"value": 1, "factor": 0}, "greater than 0"),
    ],
)
def test_invalid_limits_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Limit(**kw)


def test_levels_need_one_level() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        Levels()
    with pytest.raises(ValidationError, match="not both"):
        Levels(warning=Limit(value=1), alarm=Limit(value=2), warning_fraction=0.5)


def row(rid: int, key: str, kind: str, project=None, device=None, enabled=True, alarm=100.0):  # type: ignore[no-untyped-def]
    return RuleRow(
        rid,
        key,
        kind,
        project,
        device,
        enabled,
        spec(levels=Levels(alarm=Limit(value=alarm))),
        1,
    )


CRANE = Device("crane-1", "P1", "tower_crane")
ROWS = [
    row(1, "crane_moment", "tower_crane", alarm=100),
    row(2, "crane_moment", "tower_crane", project="P1", alarm=95),
    row(3, "crane_moment", "tower_crane", device="crane-1", alarm=90),
    row(4, "crane_moment", "tower_crane", project="P2", alarm=80),
    row(5, "crane_wind", "tower_crane"),
    row(6, "crane_wind", "tower_crane", project="P1", enabled=False),
    row(7, "no_hard_hat", "*"),
    row(8, "noise", "noise"),
    row(9, "crane_tilt", "*"),
    row(10, "crane_tilt", "tower_crane"),
]


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (CRANE, {"crane_moment": 3, "no_hard_hat": 7, "crane_tilt": 10}),
        (
            Device("crane-2", "P1", "tower_crane"),
            {"crane_moment": 2, "no_hard_hat": 7, "crane_tilt": 10},
        ),
        (
            Device("crane-3", "P2", "tower_crane"),
            {"crane_moment": 4, "crane_wind": 5, "no_hard_hat": 7, "crane_tilt": 10},
        ),
        (
            Device("crane-4", "P3", "tower_crane"),
            {"crane_moment": 1, "crane_wind": 5, "no_hard_hat": 7, "crane_tilt": 10},
        ),
        (Device("noise-1", "P1", "noise"), {"noise": 8, "no_hard_hat": 7, "crane_tilt": 9}),
    ],
)
def test_most_specific_rule_wins_and_disabled_overrides_switch_off(
    device: Device, expected: dict[str, int]
) -> None:
    got = {k: r.id for k, r in effective_rules(ROWS, device).items()}
    assert got == expected
    assert {k: r.id for k, r in RuleBook(ROWS).for_device(device).items()} == expected


def test_defaults_cite_their_sources_and_validate() -> None:
    keys = {(d.key, d.device_kind) for d in DEFAULT_RULES}
    assert len(keys) == len(DEFAULT_RULES)
    for d in DEFAULT_RULES:
        assert d.spec.source, d.key
        RuleSpec.model_validate(d.spec.model_dump(mode="json"))  # round-trips through jsonb
    by_key = {d.key: d.spec for d in DEFAULT_RULES}
    assert "GB 50497-2019" in by_key["pit_displacement"].source
    assert "GB 12523-2011" in by_key["noise"].source
    assert "DB13/2934" in by_key["pm10"].source
    assert by_key["crane_moment"].levels.warning.value == 90  # type: ignore[union-attr]
    assert by_key["crane_moment"].levels.alarm.value == 100  # type: ignore[union-attr]
