"""The detector's class taxonomy and the per-source mapping onto it, by meaning.

Why these five classes (checked by drawing each source's boxes on sample images):

- ``person``: a whole person, head to feet (or what is visible). Only construction-safety-rf100
  and construction-site-safety draw every person; the Hard Hat Workers ``person`` boxes are
  sparse (79 of 2,400 images in hardhat-workers-full have any), so there it counts as *partial*
  and is not exported.
- ``head``: a head *without* a hard hat (hair, cap or bare head, face included). Every source
  has it under another name: ``head``, ``no-helmet``, ``NO-Hardhat``, ``sem_capacete``.
- ``hard_hat``: a hard hat worn on a head. The box extent differs: Hard Hat Workers and
  safety-vest-v4 box the whole head with its helmet, construction-site-safety and most of
  construction-safety-rf100 box the helmet alone. One class still, because the edge rule is
  "a head with / without a hard hat" and both extents sit on the same head.
- ``vest``: a reflective (hi-vis) vest worn by a person; the box covers the torso with the vest.
- ``no_vest``: the torso (sometimes the whole body) of a person wearing no vest. It is the
  positive evidence for the "no vest" violation; it is not "person minus vest".

``head`` and ``no_vest`` are explicit classes rather than "person without a hard hat / vest
box" because every source draws them as boxes of their own and the edge agent alerts on them
directly. Masks, cones, machinery and vehicles (construction-site-safety) are dropped.
"""

from __future__ import annotations

import re

CLASSES: tuple[str, ...] = ("person", "head", "hard_hat", "vest", "no_vest")

DEFINITIONS: dict[str, str] = {
    "person": "a whole person (visible extent)",
    "head": "a head without a hard hat (no-helmet, NO-Hardhat, sem_capacete)",
    "hard_hat": "a hard hat worn on a head (box: helmet alone or head with helmet, per source)",
    "vest": "a reflective vest worn by a person (torso box)",
    "no_vest": "the torso (or body) of a person wearing no reflective vest",
}

# Upstream class name (normalised: lower case, '-', '_' and spaces folded) -> taxonomy class,
# or None where the class is outside the taxonomy. Unknown names are an error: a new source
# needs its names added here on purpose.
NAME_MAP: dict[str, str | None] = {
    "person": "person",
    "head": "head",
    "no helmet": "head",
    "no hardhat": "head",
    "no hard hat": "head",
    "sem capacete": "head",  # pt: without helmet
    "helmet": "hard_hat",
    "hardhat": "hard_hat",
    "hard hat": "hard_hat",
    "capacete": "hard_hat",  # pt: helmet
    "vest": "vest",
    "safety vest": "vest",
    "colete refletivo": "vest",  # pt: reflective vest
    "no vest": "no_vest",
    "no safety vest": "no_vest",
    "sem colete refletivo": "no_vest",  # pt: without reflective vest
    "mask": None,
    "no mask": None,
    "safety cone": None,
    "machinery": None,
    "vehicle": None,
}


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def map_name(name: str) -> str | None:
    """The taxonomy class of an upstream class name (None: dropped). KeyError if unknown."""
    key = normalise(name)
    if key not in NAME_MAP:
        raise KeyError(f"class name {name!r} has no mapping in datasets.taxonomy.NAME_MAP")
    return NAME_MAP[key]


def class_map(names: list[str]) -> dict[int, str | None]:
    """Upstream class id -> taxonomy class (None: dropped), by the names of a data.yaml."""
    return {i: map_name(n) for i, n in enumerate(names)}
