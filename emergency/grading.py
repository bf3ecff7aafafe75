"""Incident grading per State Council Order 493 (《生产安全事故报告和调查处理条例》,
国务院令第493号, 2007), article 3.

特别重大: 30 or more deaths, or 100 or more serious injuries (acute industrial poisoning
included), or a direct economic loss of ¥100 million or more; 重大: 10-29 deaths, 50-99
serious injuries, ¥50 million up to ¥100 million; 较大: 3-9 deaths, 10-49 serious injuries,
¥10 million up to ¥50 million; 一般: fewer than 3 deaths, fewer than 10 serious injuries, less
than ¥10 million. The article's last paragraph: "以上" includes the bound, "以下" excludes it.
Each figure gives a grade; the incident takes the highest, and the reason names the figures
that set it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

CITATION = (
    "《生产安全事故报告和调查处理条例》(国务院令第493号) 第三条: 特别重大事故 30人以上死亡/"
    "100人以上重伤/1亿元以上直接经济损失; 重大事故 10-30人/50-100人/5000万-1亿元; 较大事故 "
    "3-10人/10-50人/1000万-5000万元; 一般事故 以下; 所称的“以上”包括本数，所称的“以下”不包括本数"
)


class Grade(StrEnum):
    GENERAL = "general"  # 一般事故
    LARGER = "larger"  # 较大事故
    MAJOR = "major"  # 重大事故
    ESPECIALLY_MAJOR = "especially_major"  # 特别重大事故


LABELS = {
    Grade.GENERAL: "一般事故",
    Grade.LARGER: "较大事故",
    Grade.MAJOR: "重大事故",
    Grade.ESPECIALLY_MAJOR: "特别重大事故",
}
ORDER = (Grade.GENERAL, Grade.LARGER, Grade.MAJOR, Grade.ESPECIALLY_MAJOR)

# Lower bounds ("以上", inclusive) of 较大, 重大, 特别重大 per figure.
DEATHS = (3, 10, 30)
SERIOUS_INJURIES = (10, 50, 100)
LOSS_YUAN = (Decimal(10_000_000), Decimal(50_000_000), Decimal(100_000_000))

_FIGURES = (
    ("deaths", "死亡 deaths", DEATHS, "人"),
    ("serious_injuries", "重伤 serious injuries", SERIOUS_INJURIES, "人"),
    ("direct_loss_yuan", "直接经济损失 direct loss", LOSS_YUAN, "元"),
)


@dataclass(frozen=True)
class Grading:
    grade: Grade
    label: str
    reason: str  # which figure(s) set the grade, and against which bound
    deciding: tuple[str, ...]  # the figures that set it (none reach a bound: all three)
    citation: str = CITATION


def _level(value: Decimal, bounds: tuple[int, ...] | tuple[Decimal, ...]) -> int:
    return sum(1 for b in bounds if value >= b)  # "以上" includes the bound


def _fmt(v: Decimal) -> str:
    return f"{v:,.2f}".rstrip("0").rstrip(".") if v != v.to_integral_value() else f"{v:,.0f}"


def grade(deaths: int, serious_injuries: int, direct_loss_yuan: float | int | Decimal) -> Grading:
    """The grade of an incident with these figures, and the figures that set it."""
    figures = {
        "deaths": Decimal(deaths),
        "serious_injuries": Decimal(serious_injuries),
        "direct_loss_yuan": Decimal(str(direct_loss_yuan)),
    }
    for name, value in figures.items():
        if value < 0:
            raise ValueError(f"{name} cannot be negative")
    levels = {name: _level(figures[name], bounds) for name, _, bounds, _ in _FIGURES}
    top = max(levels.values())
    g = ORDER[top]
    parts = []
    deciding = []
    for name, title, bounds, unit in _FIGURES:
        v = figures[name]
        if top == 0:
            parts.append(f"{title} {_fmt(v)}{unit} < {_fmt(Decimal(bounds[0]))}{unit}")
            deciding.append(name)
        elif levels[name] == top:
            bound = f"≥ {_fmt(Decimal(bounds[top - 1]))}{unit}"
            if top < len(bounds):
                bound += f" and < {_fmt(Decimal(bounds[top]))}{unit}"
            parts.append(f"{title} {_fmt(v)}{unit} {bound}")
            deciding.append(name)
    joiner = "; " if top == 0 else " or "
    reason = f"{LABELS[g]} {g.value}: {joiner.join(parts)}"
    return Grading(g, LABELS[g], reason, tuple(deciding))
