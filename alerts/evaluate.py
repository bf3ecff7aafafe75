"""Rule evaluation as pure functions: (rule, state of one target, observation or clock) →
(new state, actions). No I/O, no clock of its own, no thresholds of its own.

One target is one (device, rule, metric or camera/zone). Conditions — levels, sustain, rate,
escalation of a persisting warning — are judged on observations, in the observation's time
(the device's clock; the engine clamps future times to its own). What follows from the
*absence* of observations — a silent device, back to normal long enough, a repeat or an
escalation to the regulator that is due — is judged by :func:`tick` on the hub's clock.

An alert's level only rises while it is active; it clears when the condition has been back to
normal for the rule's ``auto_clear_s`` (edge rules: when the edge has not repeated it for that
long; silence rules: when the device is heard again). Readings that flap around a level stay
in one alert: going above again before the auto-clear time cancels the clearing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any

from alerts.rules import RANK, Direction, Level, Levels, Limit, RuleKind, RuleSpec, Window

EPS = 1e-9


# --- limits ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """The levels in force for one device at one time, and how they were arrived at."""

    warning: float | None
    alarm: float | None
    window: str | None = None  # name of the time window in force, None: the default levels
    explain: str = ""

    def for_level(self, level: Level) -> float | None:
        return self.alarm if level is Level.ALARM else self.warning


def _resolve(
    limit: Limit, rated: dict[str, float] | Any, direction: Direction
) -> tuple[float | None, str]:
    """A limit's value for a device: the stricter of its absolute value and its multiple of a
    rated value the device has. A rated key the device lacks is skipped (and said so)."""
    found: list[tuple[float, str]] = []
    if limit.value is not None:
        found.append((limit.value, f"{limit.value:g}"))
    if limit.rated is not None:
        r = rated.get(limit.rated)
        if r is not None:
            v = float(r) * limit.factor
            found.append((v, f"{limit.rated} {float(r):g} x {limit.factor:g} = {v:g}"))
        elif limit.value is None:
            return None, f"device has no rated {limit.rated}"
    pick = min if direction is Direction.ABOVE else max
    value, how = pick(found, key=lambda x: x[0])
    if len(found) > 1:
        how = f"{how} (stricter of {' and '.join(h for _, h in found)})"
    return value, how


def window_at(spec: RuleSpec, at: datetime, tz: tzinfo) -> Window | None:
    """The first time window of ``spec`` that contains ``at`` in local time ``tz``."""
    if not spec.windows:
        return None
    local = at.astimezone(tz).time()
    return next((w for w in spec.windows if w.contains(local)), None)


def limits_for(spec: RuleSpec, rated: dict[str, float] | Any, at: datetime, tz: tzinfo) -> Limits:
    """Warning and alarm levels of ``spec`` for a device with ``rated`` values at ``at``."""
    return _limits(spec, rated, window_at(spec, at, tz))


def _limits(spec: RuleSpec, rated: dict[str, float] | Any, win: Window | None) -> Limits:
    levels: Levels | None = win.levels if win else spec.levels
    if levels is None:
        return Limits(None, None, None, "no levels in force at this time")
    notes = []
    alarm = warning = None
    if levels.alarm is not None:
        alarm, how = _resolve(levels.alarm, rated, spec.direction)
        notes.append(f"alarm {how}")
    if levels.warning is not None:
        warning, how = _resolve(levels.warning, rated, spec.direction)
        notes.append(f"warning {how}")
    elif levels.warning_fraction is not None and alarm is not None:
        warning = alarm * levels.warning_fraction
        notes.append(f"warning {levels.warning_fraction:g} x alarm = {warning:g}")
    if win is not None:
        notes.append(f"{win.name} window {win.start:%H:%M}-{win.end:%H:%M}")
    return Limits(warning, alarm, win.name if win else None, "; ".join(notes))


def classify(value: float, limits: Limits, direction: Direction) -> Level:
    """The level ``value`` is at (reaching a level counts: 100 % of rated is an alarm)."""

    def reached(level: float | None) -> bool:
        if level is None:
            return False
        return value >= level - EPS if direction is Direction.ABOVE else value <= level + EPS

    if reached(limits.alarm):
        return Level.ALARM
    if reached(limits.warning):
        return Level.WARNING
    return Level.NORMAL


# --- state and actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the engine remembers per target; persisted as JSON (:func:`state_to_json`)."""

    level: Level = Level.NORMAL  # level of the active alert; NORMAL: none active
    opened_at: datetime | None = None
    warning_since: datetime | None = None  # observed at or past warning continuously since
    alarm_since: datetime | None = None  # observed at or past alarm continuously since
    normal_since: datetime | None = None  # active alert, observed back to normal since
    last_time: datetime | None = None  # last observation (silence: last heard)
    last_value: float | None = None
    worst: float | None = None  # worst value while active
    occurrences: int = 0  # observations folded into the active alert
    samples: tuple[tuple[datetime, float], ...] = ()  # rate rules: (time, value), oldest first
    last_notified: datetime | None = None
    regulator_notified: bool = False

    @property
    def active(self) -> bool:
        return self.level is not Level.NORMAL


class Act(StrEnum):
    OPEN = "open"
    ESCALATE = "escalate"
    CLEAR = "clear"
    REPEAT = "repeat"
    REGULATOR = "regulator"


@dataclass(frozen=True, slots=True)
class Factor:
    """One reason behind an alert's level and priority; ``points`` add up to the priority."""

    factor: str
    value: Any
    points: int
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "value": self.value,
            "points": self.points,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Action:
    act: Act
    level: Level
    at: datetime
    reason: str
    value: float | None = None
    threshold: float | None = None
    factors: tuple[Factor, ...] = ()

    @property
    def priority(self) -> int:
        return max(0, min(100, sum(f.points for f in self.factors)))


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TargetState
    actions: tuple[Action, ...] = ()


LEVEL_POINTS = {Level.WARNING: 30, Level.ALARM: 60}
MAX_EXCEEDANCE_POINTS = 20


def _exceedance(value: float, threshold: float | None, direction: Direction) -> float | None:
    """How far past the threshold, as a ratio (1.05: 5 % past it)."""
    if threshold is None or value is None:
        return None
    if direction is Direction.ABOVE:
        return value / threshold if threshold > 0 else None
    return threshold / value if value > 0 else None


def _factors(
    spec: RuleSpec,
    level: Level,
    value: float | None,
    threshold: float | None,
    limits: Limits | None,
    extra: tuple[Factor, ...] = (),
) -> tuple[Factor, ...]:
    out = [
        Factor(
            "level",
            level.value,
            LEVEL_POINTS[level],
            f"{'报警 alarm' if level is Level.ALARM else '预警 warning'} by rule {spec.title}",
        )
    ]
    if value is not None and threshold is not None:
        ratio = _exceedance(value, threshold, spec.direction)
        word = "reached" if spec.direction is Direction.ABOVE else "fell to"
        note = f"{value:g} {spec.unit} {word} the {level.value} level {threshold:g} {spec.unit}"
        if limits is not None and limits.explain:
            note += f" ({limits.explain})"
        points = 0
        if ratio is not None and math.isfinite(ratio):
            points = max(0, min(MAX_EXCEEDANCE_POINTS, round((ratio - 1) * 100)))
        out.append(Factor("exceedance", round(ratio, 4) if ratio else None, points, note.strip()))
    if spec.sustain_s > 0:
        out.append(Factor("sustained", spec.sustain_s, 0, f"held at least {spec.sustain_s:g} s"))
    return (*out, *extra)


def _since(prev: datetime | None, at: datetime, holds: bool) -> datetime | None:
    return (prev or at) if holds else None


def _held(since: datetime | None, at: datetime, need_s: float) -> bool:
    return since is not None and (at - since).total_seconds() >= need_s - EPS


def _judge(
    spec: RuleSpec,
    s: TargetState,
    raw: Level,
    value: float | None,
    at: datetime,
    limits: Limits | None,
    extra: tuple[Factor, ...] = (),
) -> Outcome:
    """Fold one observation at level ``raw`` into the state."""
    s = replace(
        s,
        warning_since=_since(s.warning_since, at, RANK[raw] >= 1),
        alarm_since=_since(s.alarm_since, at, RANK[raw] >= 2),
        last_time=at,
        last_value=value,
    )
    if _held(s.alarm_since, at, spec.sustain_s):
        effective = Level.ALARM
    elif _held(s.warning_since, at, spec.sustain_s):
        effective = Level.WARNING
    else:
        effective = Level.NORMAL

    def threshold(level: Level) -> float | None:
        return limits.for_level(level) if limits else None

    if not s.active:
        if effective is Level.NORMAL:
            return Outcome(s)
        th = threshold(effective)
        s = replace(
            s,
            level=effective,
            opened_at=at,
            normal_since=None,
            worst=value,
            occurrences=1,
            last_notified=at,
            regulator_notified=False,
        )
        return Outcome(
            s,
            (
                Action(
                    Act.OPEN,
                    effective,
                    at,
                    _reason(spec, effective, value, th),
                    value,
                    th,
                    _factors(spec, effective, value, th, limits, extra),
                ),
            ),
        )

    if raw is Level.NORMAL:
        s = replace(s, normal_since=s.normal_since or at)
        if _held(s.normal_since, at, spec.auto_clear_s):
            return _clear(s, at, f"back to normal for {spec.auto_clear_s:g} s")
        return Outcome(s)

    s = replace(
        s, normal_since=None, worst=_worse(spec, s.worst, value), occurrences=s.occurrences + 1
    )
    if RANK[effective] > RANK[s.level]:
        th = threshold(effective)
        return _escalate(
            s,
            at,
            spec,
            _reason(spec, effective, value, th),
            value,
            th,
            _factors(spec, effective, value, th, limits, extra),
        )
    if (
        s.level is Level.WARNING
        and spec.escalate_after_s is not None
        and _held(s.warning_since, at, spec.escalate_after_s)
    ):
        assert s.warning_since is not None
        persisted = Factor(
            "persisted",
            spec.escalate_after_s,
            10,
            f"warning persisted {(at - s.warning_since).total_seconds():g} s "
            f"(escalates after {spec.escalate_after_s:g} s)",
        )
        th = threshold(Level.WARNING)
        return _escalate(
            s,
            at,
            spec,
            f"{spec.title}: warning persisted {spec.escalate_after_s:g} s",
            value,
            th,
            _factors(spec, Level.ALARM, value, th, limits, (*extra, persisted)),
        )
    return Outcome(s)


def _worse(spec: RuleSpec, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b) if spec.direction is Direction.ABOVE else min(a, b)


def _reason(spec: RuleSpec, level: Level, value: float | None, threshold: float | None) -> str:
    if value is None or threshold is None:
        return f"{spec.title}: {level.value}"
    return f"{spec.title}: {value:g} {spec.unit} at {level.value} level {threshold:g} {spec.unit}"


def _escalate(
    s: TargetState,
    at: datetime,
    spec: RuleSpec,
    reason: str,
    value: float | None,
    threshold: float | None,
    factors: tuple[Factor, ...],
) -> Outcome:
    s = replace(s, level=Level.ALARM, last_notified=at)
    return Outcome(s, (Action(Act.ESCALATE, Level.ALARM, at, reason, value, threshold, factors),))


def _clear(s: TargetState, at: datetime, reason: str) -> Outcome:
    level = s.level
    s = replace(
        s,
        level=Level.NORMAL,
        opened_at=None,
        normal_since=None,
        warning_since=None,
        alarm_since=None,
        worst=None,
        occurrences=0,
        last_notified=None,
        regulator_notified=False,
    )
    return Outcome(s, (Action(Act.CLEAR, level, at, reason),))


# --- observations ------------------------------------------------------------------------------


def _stale(s: TargetState, at: datetime) -> bool:
    """Older than what was already judged, or the same again (a redelivery)."""
    return s.last_time is not None and at <= s.last_time


def _rate(
    spec: RuleSpec, s: TargetState, value: float, at: datetime
) -> tuple[float | None, tuple[tuple[datetime, float], ...]]:
    """The rate of change at ``at`` (None until the samples span ``min_span_s``) and the
    samples to keep: thinned to ``rate.samples`` per window so the state stays small."""
    r = spec.rate
    assert r is not None
    kept = tuple(p for p in s.samples if (at - p[0]).total_seconds() <= r.window_s + EPS)
    rate = None
    if kept:
        t0, v0 = kept[0]
        span = (at - t0).total_seconds()
        if span > 0 and span >= r.min_span_s - EPS:
            rate = (value - v0) / span * r.per_s
            if r.absolute:
                rate = abs(rate)
    if not kept or (at - kept[-1][0]).total_seconds() >= r.window_s / r.samples - EPS:
        kept = (*kept, (at, value))
    return rate, kept


def observe_value(
    spec: RuleSpec, s: TargetState, value: float, at: datetime, rated: Any, tz: tzinfo
) -> Outcome:
    """A reading of the rule's metric (threshold and rate rules)."""
    if _stale(s, at):
        return Outcome(s)
    judged = value
    if spec.kind is RuleKind.RATE:
        rate, samples = _rate(spec, s, value, at)
        s = replace(s, samples=samples)
        if rate is None:  # not enough history yet: remember the reading, judge nothing
            return Outcome(replace(s, last_time=at, last_value=value))
        judged = rate
    limits = limits_for(spec, rated, at, tz)
    extra: tuple[Factor, ...] = ()
    if limits.window:
        extra = (Factor("window", limits.window, 0, f"{limits.window} levels in force"),)
    if spec.kind is RuleKind.RATE:
        assert spec.rate is not None
        extra = (
            *extra,
            Factor(
                "rate",
                round(judged, 4),
                0,
                f"from {value:g} now, over up to {spec.rate.window_s:g} s",
            ),
        )
    raw = classify(judged, limits, spec.direction)
    return _judge(spec, s, raw, judged, at, limits, extra)


def observe_edge(
    spec: RuleSpec, s: TargetState, level: Level, at: datetime, detail: str = ""
) -> Outcome:
    """An edge-judged alert at ``level``. A gap of ``auto_clear_s`` since the last one means
    the condition lapsed: a pending sustain or escalation starts again."""
    if _stale(s, at):
        return Outcome(s)
    if s.last_time is not None and (at - s.last_time).total_seconds() >= spec.auto_clear_s - EPS:
        s = replace(s, warning_since=None, alarm_since=None)
    extra = (Factor("edge", detail, 0, "judged on the edge" + (f": {detail}" if detail else "")),)
    return _judge(spec, s, level, None, at, None, extra)


def observe_heard(spec: RuleSpec, s: TargetState, at: datetime) -> Outcome:
    """The device was heard from (silence rules): normal again."""
    if _stale(s, at):
        return Outcome(s)
    if not s.active:
        return Outcome(replace(s, last_time=at))
    return _judge(spec, s, Level.NORMAL, 0.0, at, None)


def tick(spec: RuleSpec, s: TargetState, now: datetime, status: str | None = None) -> Outcome:
    """What is due at hub time ``now``. ``status`` is the lifecycle status of the active alert
    (repeats and the regulator only concern alerts nobody has acknowledged yet)."""
    actions: list[Action] = []
    if spec.kind is RuleKind.SILENCE and s.last_time is not None:
        silent = (now - s.last_time).total_seconds()
        limits = limits_for(spec, {}, now, UTC)  # silence rules have no windows
        raw = classify(silent, limits, Direction.ABOVE)
        if RANK[raw] > RANK[s.level]:
            th = limits.for_level(raw)
            reason = f"{spec.title}: nothing heard for {silent:.0f} s"
            factors = _factors(spec, raw, round(silent, 1), th, limits)
            if not s.active:
                s = replace(
                    s,
                    level=raw,
                    opened_at=now,
                    worst=silent,
                    occurrences=1,
                    last_notified=now,
                    regulator_notified=False,
                )
                actions.append(Action(Act.OPEN, raw, now, reason, silent, th, factors))
            else:
                out = _escalate(replace(s, worst=silent), now, spec, reason, silent, th, factors)
                s = out.state
                actions.extend(out.actions)
            return Outcome(s, tuple(actions))  # just opened: nothing else is due yet
        if s.active:
            s = replace(s, worst=max(s.worst or 0.0, silent))
    if not s.active:
        if (
            spec.kind is RuleKind.EDGE
            and s.warning_since is not None
            and s.last_time is not None
            and (now - s.last_time).total_seconds() >= spec.auto_clear_s - EPS
        ):
            s = replace(s, warning_since=None, alarm_since=None)  # the pending one lapsed
        return Outcome(s)
    if spec.kind is RuleKind.EDGE and s.last_time is not None:
        quiet = (now - s.last_time).total_seconds()
        if quiet >= spec.auto_clear_s - EPS:
            return _clear(s, now, f"not repeated by the edge for {spec.auto_clear_s:g} s")
    if s.normal_since is not None and _held(s.normal_since, now, spec.auto_clear_s):
        return _clear(s, now, f"back to normal for {spec.auto_clear_s:g} s")
    if status != "open":
        return Outcome(s)
    if (
        spec.repeat_every_s is not None
        and s.last_notified is not None
        and _held(s.last_notified, now, spec.repeat_every_s)
    ):
        s = replace(s, last_notified=now)
        actions.append(Action(Act.REPEAT, s.level, now, f"{spec.title}: still unacknowledged"))
    if (
        spec.regulator_after_s is not None
        and not s.regulator_notified
        and RANK[s.level] >= RANK[spec.regulator_level]
        and _held(s.opened_at, now, spec.regulator_after_s)
    ):
        s = replace(s, regulator_notified=True)
        actions.append(
            Action(
                Act.REGULATOR,
                s.level,
                now,
                f"{spec.title}: unacknowledged {spec.regulator_after_s:g} s after it opened",
            )
        )
    return Outcome(s, tuple(actions))


def retire(s: TargetState, now: datetime, reason: str) -> Outcome:
    """The rule behind an active alert was removed or disabled: clear it."""
    return _clear(s, now, reason) if s.active else Outcome(s)


# --- persistence -----------------------------------------------------------------------------


def state_to_json(s: TargetState) -> dict[str, Any]:
    def t(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "level": s.level.value,
        "opened_at": t(s.opened_at),
        "warning_since": t(s.warning_since),
        "alarm_since": t(s.alarm_since),
        "normal_since": t(s.normal_since),
        "last_time": t(s.last_time),
        "last_value": s.last_value,
        "worst": s.worst,
        "occurrences": s.occurrences,
        "samples": [[p[0].isoformat(), p[1]] for p in s.samples],
        "last_notified": t(s.last_notified),
        "regulator_notified": s.regulator_notified,
    }


def state_from_json(d: dict[str, Any]) -> TargetState:
    def t(v: str | None) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    return TargetState(
        level=Level(d.get("level", "normal")),
        opened_at=t(d.get("opened_at")),
        warning_since=t(d.get("warning_since")),
        alarm_since=t(d.get("alarm_since")),
        normal_since=t(d.get("normal_since")),
        last_time=t(d.get("last_time")),
        last_value=d.get("last_value"),
        worst=d.get("worst"),
        occurrences=int(d.get("occurrences", 0)),
        samples=tuple((datetime.fromisoformat(a), float(b)) for a, b in d.get("samples", ())),
        last_notified=t(d.get("last_notified")),
        regulator_notified=bool(d.get("regulator_notified", False)),
    )
