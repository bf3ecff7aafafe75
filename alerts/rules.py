"""Alert rules as validated data, and which rule is in force for a device.

A rule is a :class:`RuleSpec` stored as jsonb in ``alert_rules``, one row per key and scope
(device kind, project, device). Thresholds live only there: the evaluator reads them from the
spec it is given and knows no numbers of its own. For a device, the most specific row of each
key wins whole (:func:`effective_rules`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ANY_KIND = "*"


class Level(StrEnum):
    """Normal, 预警 warning, 报警 alarm (ordered by :data:`RANK`)."""

    NORMAL = "normal"
    WARNING = "warning"
    ALARM = "alarm"


RANK = {Level.NORMAL: 0, Level.WARNING: 1, Level.ALARM: 2}


class Direction(StrEnum):
    ABOVE = "above"
    BELOW = "below"


class RuleKind(StrEnum):
    THRESHOLD = "threshold"  # a reading's value against the levels
    RATE = "rate"  # the value's rate of change over a window against the levels
    SILENCE = "silence"  # seconds since the device was last heard against the levels
    EDGE = "edge"  # edge-judged alerts (EdgeAlert); the level is the one the edge sent


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Spec):
    """One level: an absolute value, a multiple of one of the device's rated values, or the
    stricter of both (GB 50497's "30 mm or 0.3 % of depth, whichever is smaller")."""

    value: float | None = Field(None, description="Absolute level in the rule's unit.")
    rated: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="Key of a rated value of the device (devices.rated), e.g. depth_m.",
    )
    factor: float = Field(
        1.0,
        gt=0,
        description="The rated value times this is the level, e.g. 3 for 0.3 % of a depth in "
        "metres expressed in millimetres.",
    )

    @model_validator(mode="after")
    def _something(self) -> Limit:
        if self.value is None and self.rated is None:
            raise ValueError("a limit needs a value, a rated key, or both")
        return self


class Levels(_Spec):
    """The two levels. The warning is its own limit or a fraction of the alarm level."""

    warning: Limit | None = Field(None, description="预警 warning level.")
    alarm: Limit | None = Field(None, description="报警 alarm level.")
    warning_fraction: float | None = Field(
        None,
        gt=0,
        description="Warning at this fraction of the alarm level (e.g. 0.8 for 80 %); for "
        "'below' rules use a value above 1.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Levels:
        if self.warning is not None and self.warning_fraction is not None:
            raise ValueError("give a warning limit or a warning_fraction, not both")
        if self.warning_fraction is not None and self.alarm is None:
            raise ValueError("warning_fraction needs an alarm limit")
        if self.warning is None and self.alarm is None:
            raise ValueError("give at least one of warning and alarm")
        return self


class Window(_Spec):
    """Levels that apply during a time of day (project local time), e.g. night noise limits.
    ``start`` is inside the window, ``end`` is not; a window may wrap past midnight."""

    name: str = Field(max_length=32, description="Shown with the alert, e.g. night.")
    start: time = Field(description="Local time the window starts (inclusive), e.g. 22:00.")
    end: time = Field(description="Local time it ends (exclusive), e.g. 06:00.")
    levels: Levels = Field(description="Levels in force inside the window.")

    def contains(self, t: time) -> bool:
        t = t.replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Rate(_Spec):
    """Rate of change of a metric: (value now - value at the oldest sample kept in the window)
    / elapsed, scaled to ``per_s`` (86400 for per day)."""

    window_s: float = Field(gt=0, description="Samples older than this are forgotten.")
    per_s: float = Field(86400.0, gt=0, description="Rate unit: change per this many seconds.")
    min_span_s: float = Field(
        0.0,
        ge=0,
        description="No rate until the samples span this long (a short span blows noise up).",
    )
    absolute: bool = Field(True, description="Judge the magnitude, whichever way it moves.")
    samples: int = Field(
        32, ge=2, le=256, description="Samples kept per window (bounds the stored state)."
    )


class RuleSpec(_Spec):
    """What one rule watches and when it raises, escalates, repeats and clears."""

    kind: RuleKind = Field(description="threshold, rate, silence or edge.")
    title: str = Field(max_length=200, description="Display name, e.g. 塔吊力矩 crane moment.")
    source: str = Field(
        "", max_length=1000, description="Where the values come from: standard and clause."
    )
    metric: str | None = Field(
        None,
        pattern=r"^[a-z0-9_*?\[\]]{1,64}$",
        description="Metric name or glob (fnmatch), e.g. p*_displacement_mm; the matched "
        "metric is the alert's target. threshold and rate rules only.",
    )
    unit: str = Field("", max_length=16, description="Unit of the levels (and the value).")
    direction: Direction = Field(Direction.ABOVE, description="Raise above or below the levels.")
    levels: Levels | None = Field(None, description="Levels outside any window.")
    windows: tuple[Window, ...] = Field(
        (), description="Time-of-day levels; the first window containing the time wins."
    )
    rate: Rate | None = Field(None, description="Rate-of-change settings (rate rules).")
    sustain_s: float = Field(
        0.0, ge=0, description="A level counts once observations held it this long."
    )
    escalate_after_s: float | None = Field(
        None, gt=0, description="An active warning observed for this long becomes an alarm."
    )
    auto_clear_s: float = Field(
        60.0,
        ge=0,
        description="Clear after this long back to normal (edge rules: without a repeat; "
        "silence rules: after the device is heard again).",
    )
    repeat_every_s: float | None = Field(
        None, gt=0, description="Notify again this often while the alert is unacknowledged."
    )
    regulator_after_s: float | None = Field(
        None, gt=0, description="Tell the regulator if still unacknowledged after this long."
    )
    regulator_level: Literal[Level.WARNING, Level.ALARM] = Field(
        Level.ALARM, description="Lowest level the regulator is told about."
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> RuleSpec:
        k = self.kind
        if k in (RuleKind.THRESHOLD, RuleKind.RATE):
            if not self.metric:
                raise ValueError(f"a {k} rule needs a metric")
            if self.levels is None and not self.windows:
                raise ValueError(f"a {k} rule needs levels")
        elif self.metric is not None:
            raise ValueError(f"a {k} rule watches no metric")
        if (k is RuleKind.RATE) != (self.rate is not None):
            raise ValueError("rate settings belong to rate rules, and rate rules need them")
        if k is RuleKind.SILENCE and (self.levels is None or self.windows):
            raise ValueError("a silence rule needs levels (seconds silent), no windows")
        if k is RuleKind.EDGE and (self.levels is not None or self.windows):
            raise ValueError("an edge rule takes its level from the edge: no levels")
        for lv in (self.levels, *(w.levels for w in self.windows)):
            if lv is not None and lv.warning_fraction is not None:
                ok = (
                    lv.warning_fraction < 1
                    if self.direction is Direction.ABOVE
                    else (lv.warning_fraction > 1)
                )
                if not ok:
                    raise ValueError(
                        "warning_fraction must put the warning before the alarm "
                        "(< 1 for 'above' rules, > 1 for 'below' rules)"
                    )
        return self

    def matches(self, metric: str) -> bool:
        return self.metric is not None and fnmatch.fnmatchcase(metric, self.metric)


# --- scope resolution -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One stored rule row."""

    id: int
    key: str
    device_kind: str
    project_id: str | None
    device_id: str | None
    enabled: bool
    spec: RuleSpec
    revision: int

    @property
    def scope(self) -> str:
        if self.device_id is not None:
            return "device"
        return "project" if self.project_id is not None else "kind"


@dataclass(frozen=True, slots=True)
class Device:
    """What rule resolution and limits need to know about a device."""

    id: str
    project_id: str
    kind: str
    rated: Mapping[str, float] = field(default_factory=dict)


def specificity(row: RuleRow, device: Device) -> int | None:
    """How specifically ``row`` names ``device`` (higher wins); None: it does not apply."""
    exact = row.device_kind == device.kind
    if not exact and row.device_kind != ANY_KIND:
        return None
    if row.device_id is not None:
        scope = 3 if row.device_id == device.id else 0
    elif row.project_id is not None:
        scope = 2 if row.project_id == device.project_id else 0
    else:
        scope = 1
    return scope * 2 + exact if scope else None


def effective_rules(rows: Iterable[RuleRow], device: Device) -> dict[str, RuleRow]:
    """Per rule key, the row in force for ``device``: the most specific one, unless that one
    is disabled (a disabled override switches the rule off for its scope)."""
    best: dict[str, tuple[int, RuleRow]] = {}
    for row in rows:
        rank = specificity(row, device)
        if rank is not None and (row.key not in best or rank > best[row.key][0]):
            best[row.key] = (rank, row)
    return {k: r for k, (_, r) in best.items() if r.enabled}


class RuleBook:
    """All rule rows, with the rules in force cached per device (rebuilt on reload)."""

    def __init__(self, rows: Iterable[RuleRow] = ()) -> None:
        self.rows = list(rows)
        self._by_kind: dict[str, list[RuleRow]] = {}
        for r in self.rows:
            self._by_kind.setdefault(r.device_kind, []).append(r)
        self._cache: dict[tuple[str, str, str], dict[str, RuleRow]] = {}

    def for_device(self, device: Device) -> dict[str, RuleRow]:
        key = (device.id, device.project_id, device.kind)
        got = self._cache.get(key)
        if got is None:
            rows = self._by_kind.get(device.kind, []) + self._by_kind.get(ANY_KIND, [])
            got = self._cache[key] = effective_rules(rows, device)
        return got
