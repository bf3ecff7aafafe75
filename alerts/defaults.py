"""Default rules from practice, each with its source. They are seeded into ``alert_rules``
(device-kind scope) once; from then on the database is the truth and these are not read.

Where a number comes from a standard, ``source`` names it; where it is the hub's own choice
(repeat and escalation times, silence limits, warning margins a standard does not give), the
source says "hub practice" so nobody mistakes it for a regulation. Clause numbers are given
only where they were checked against the text quoted in the project's design notes; the
others name the standard without a clause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from alerts.rules import Level, Levels, Limit, Rate, RuleKind, RuleSpec, Window
from smartsite.protocol.messages import Rule as EdgeRule

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class DefaultRule:
    key: str
    device_kind: str
    spec: RuleSpec


def _abs(value: float) -> Limit:
    return Limit(value=value)


# --- tower crane ------------------------------------------------------------------------------

CRANE_MOMENT = RuleSpec(
    kind=RuleKind.THRESHOLD,
    title="塔吊力矩 tower-crane load moment",
    source="Two-level setting of tower-crane safety monitoring systems: warning (预警) at 90 % "
    "and alarm (报警) at 100 % of the rated load moment (JGJ 332-2014 建筑塔式起重机安全监控系统"
    "应用技术规程; the moment limiter itself is required by GB 5144-2006 塔式起重机安全规程). "
    "moment_pct is already a percentage of the rated moment.",
    metric="moment_pct",
    unit="%",
    levels=Levels(warning=_abs(90.0), alarm=_abs(100.0)),
    auto_clear_s=30.0,
    repeat_every_s=5 * MINUTE,
    regulator_after_s=15 * MINUTE,
)

CRANE_WIND = RuleSpec(
    kind=RuleKind.THRESHOLD,
    title="塔吊风速 wind speed at the crane",
    source="Stop crane work in wind of force 6 and above (六级及以上大风停止塔吊作业, JGJ 33 "
    "建筑机械使用安全技术规程 practice): alarm at 10.8 m/s, the lower bound of Beaufort force 6 "
    "(GB/T 28591-2012 风力等级). Warning at 8.0 m/s, force 5, where lifting large-area loads "
    "(formwork) already stops. JGJ 196-2010 puts the stop at 12 m/s and GB 5144-2006 has the "
    "anemometer alarm at the crane's own working limit: raise per project or device when the "
    "crane's manual allows. Gusts count, so no sustain.",
    metric="wind_speed_ms",
    unit="m/s",
    levels=Levels(warning=_abs(8.0), alarm=_abs(10.8)),
    auto_clear_s=10 * MINUTE,  # wind comes in gusts: stay raised until it has calmed a while
    repeat_every_s=10 * MINUTE,
    regulator_after_s=30 * MINUTE,
)

CRANE_TILT = RuleSpec(
    kind=RuleKind.THRESHOLD,
    title="塔身倾斜 tower-crane mast tilt",
    source="Mast verticality deviation at most 4/1000 (free-standing or above the top tie; "
    "GB 5144-2006 塔式起重机安全规程, JGJ 196-2010): alarm at atan(0.004) = 0.229 deg, "
    "warning at 80 % of it (hub practice). Sustained 30 s so that the sway of slewing and "
    "lifting does not count, only a standing tilt.",
    metric="tilt_deg",
    unit="deg",
    levels=Levels(alarm=_abs(0.229), warning_fraction=0.8),
    sustain_s=30.0,
    auto_clear_s=5 * MINUTE,
    repeat_every_s=30 * MINUTE,
    regulator_after_s=HOUR,
)

# --- foundation pit ---------------------------------------------------------------------------

PIT_DISPLACEMENT = RuleSpec(
    kind=RuleKind.THRESHOLD,
    title="基坑墙顶位移 pit wall-top displacement",
    source="GB 50497-2019 建筑基坑工程监测技术标准 Table 8.0.4, first-grade pit (一级), "
    "wall-top horizontal displacement: cumulative 20-30 mm or 0.2 %-0.3 % of the excavation "
    "depth, the smaller governing; the upper ends are the defaults (30 mm; 0.3 % of depth_m in "
    "metres is depth_m x 3 mm). Warning at 80 % of the alarm value (practice: 70-80 %).",
    metric="p*_displacement_mm",
    unit="mm",
    levels=Levels(alarm=Limit(value=30.0, rated="depth_m", factor=3.0), warning_fraction=0.8),
    auto_clear_s=HOUR,
    repeat_every_s=HOUR,
    regulator_after_s=HOUR,
)

PIT_RATE = RuleSpec(
    kind=RuleKind.RATE,
    title="基坑位移速率 pit displacement rate",
    source="GB 50497-2019 Table 8.0.4, first-grade pit, wall-top horizontal displacement rate "
    "2-3 mm/d (3 mm/d here), computed by the hub from the cumulative displacement over the last "
    "day (at least 6 h of it). Warning at 80 % (practice).",
    metric="p*_displacement_mm",
    unit="mm/d",
    levels=Levels(alarm=_abs(3.0), warning_fraction=0.8),
    rate=Rate(window_s=DAY, per_s=DAY, min_span_s=6 * HOUR),
    auto_clear_s=6 * HOUR,
    repeat_every_s=HOUR,
    regulator_after_s=HOUR,
)

# --- environment -----------------------------------------------------------------------------

NOISE = RuleSpec(
    kind=RuleKind.THRESHOLD,
    title="场界噪声 site-boundary noise",
    source="GB 12523-2011 建筑施工场界环境噪声排放标准: 70 dB(A) by day, 55 dB(A) at night; day "
    "is 06:00-22:00 local time. Warnings 5 dB(A) below the limits are hub practice. The "
    "standard judges the equivalent level Leq; the hub asks the reading to hold 60 s.",
    metric="noise_dba",
    unit="dB(A)",
    levels=Levels(warning=_abs(65.0), alarm=_abs(70.0)),
    windows=(
        Window(
            name="night",
            start=time(22, 0),
            end=time(6, 0),
            levels=Levels(warning=_abs(50.0), alarm=_abs(55.0)),
        ),
    ),
    sustain_s=60.0,
    auto_clear_s=10 * MINUTE,
    repeat_every_s=30 * MINUTE,
)

PM10 = RuleSpec(
    kind=RuleKind.THRESHOLD,
    title="扬尘 PM10 at the monitoring point",
    source="DB13/2934-2019 (Hebei) 施工场地扬尘排放标准: PM10 at the site monitoring point "
    "80 ug/m3. The standard judges averaged concentrations; the hub asks the reading to hold "
    "5 min. Warning at 80 % (hub practice).",
    metric="pm10",
    unit="ug/m3",
    levels=Levels(alarm=_abs(80.0), warning_fraction=0.8),
    sustain_s=5 * MINUTE,
    auto_clear_s=15 * MINUTE,
    repeat_every_s=HOUR,
)

# --- silent devices (hub practice: no standard gives these) -----------------------------------


def _silence(kind_title: str, after_s: float) -> RuleSpec:
    return RuleSpec(
        kind=RuleKind.SILENCE,
        title=f"设备离线 {kind_title} silent",
        source="Hub practice, no standard value: the monitor, its gateway or the uplink is down. "
        "Warning after the silence below, alarm after four times as long.",
        unit="s",
        levels=Levels(warning=_abs(after_s), alarm=_abs(4 * after_s)),
        auto_clear_s=0.0,  # heard again: cleared at once
        regulator_after_s=4 * HOUR,
    )


SILENCE_AFTER_S = {
    # real-time safety monitors report every few seconds
    "tower_crane": 5 * MINUTE,
    "hoist": 5 * MINUTE,
    "high_formwork": 10 * MINUTE,
    # environment monitors report minute averages
    "dust": 15 * MINUTE,
    "noise": 15 * MINUTE,
    # automated pit monitoring reads a few times an hour at most
    "foundation_pit": 2 * HOUR,
}

# --- edge-judged unsafe behaviour ------------------------------------------------------------

_EDGE_TITLES = {
    EdgeRule.NO_HARD_HAT: "未戴安全帽 no hard hat",
    EdgeRule.NO_VEST: "未穿反光衣 no reflective vest",
    EdgeRule.ZONE_INTRUSION: "区域入侵 danger-zone intrusion",
    EdgeRule.FALL: "跌倒 fall / lying person",
    EdgeRule.UNKNOWN_PERSON: "陌生人 unknown person",
    EdgeRule.CROWDING: "人员聚集 crowding",
    EdgeRule.SMOKE_FIRE: "烟火 smoke or fire",
    EdgeRule.SMOKING: "吸烟 smoking",
}
_EDGE_URGENT = {EdgeRule.FALL, EdgeRule.SMOKE_FIRE, EdgeRule.ZONE_INTRUSION}


def _edge(rule: EdgeRule) -> RuleSpec:
    urgent = rule in _EDGE_URGENT
    return RuleSpec(
        kind=RuleKind.EDGE,
        title=_EDGE_TITLES[rule],
        source="Unsafe behaviours of Chinese site practice (DESIGN.md), judged on the edge, "
        "which also sets the level. Times are hub practice: one alert per camera and zone "
        "until the edge has not repeated it for 5 min; PPE warnings that persist 10 min "
        "become alarms.",
        auto_clear_s=5 * MINUTE,
        escalate_after_s=None if urgent else 10 * MINUTE,
        repeat_every_s=5 * MINUTE if urgent else 15 * MINUTE,
        regulator_after_s=10 * MINUTE if urgent else HOUR,
        regulator_level=Level.ALARM,
    )


# A recognised worker in a zone that requires a certificate (zone_certificate_requirements)
# they lack or hold expired: the engine judges it from the worker the edge recognised on an
# edge alert's track event. Alarm at once: special operations without a valid certificate are
# forbidden outright, whatever else the worker does.
WORKER_CERTIFICATE_RULE = "worker_certificate"
WORKER_CERTIFICATE = RuleSpec(
    kind=RuleKind.EDGE,
    title="无证作业 worker without a required certificate",
    source="特种作业人员持证上岗: 安全生产法 (2021) art. 30 and 建筑施工特种作业人员管理规定 "
    "(建质〔2008〕75号) art. 4; zones and the certificates they require are project data. "
    "Times are hub practice, as for the edge rules.",
    auto_clear_s=5 * MINUTE,
    repeat_every_s=15 * MINUTE,
    regulator_after_s=HOUR,
    regulator_level=Level.ALARM,
)


DEFAULT_RULES: tuple[DefaultRule, ...] = (
    DefaultRule("crane_moment", "tower_crane", CRANE_MOMENT),
    DefaultRule("crane_wind", "tower_crane", CRANE_WIND),
    DefaultRule("crane_tilt", "tower_crane", CRANE_TILT),
    DefaultRule("pit_displacement", "foundation_pit", PIT_DISPLACEMENT),
    DefaultRule("pit_rate", "foundation_pit", PIT_RATE),
    DefaultRule("noise", "noise", NOISE),
    DefaultRule("pm10", "dust", PM10),
    *(
        DefaultRule("device_silent", kind, _silence(kind.replace("_", " "), after))
        for kind, after in SILENCE_AFTER_S.items()
    ),
    *(DefaultRule(r.value, "*", _edge(r)) for r in EdgeRule),
    DefaultRule(WORKER_CERTIFICATE_RULE, "*", WORKER_CERTIFICATE),
)
