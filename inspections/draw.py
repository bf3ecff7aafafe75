"""The draw (双随机): k projects at random, weighted by risk, and m inspectors at random for
each, never one with a conflict of interest; reproducible and auditable.

How a draw is made:

1. :func:`build_snapshot` reads every input from the database once — the candidate projects
   with their risk score and factors (``alerts.risk``), the active inspectors, and every
   (project, inspector) exclusion with its reasons — into a plain JSON document. A project
   weighs ``base_weight + risk score`` (integers: every project keeps a chance, the riskier
   ones more). A project with fewer than m eligible inspectors cannot be inspected by this
   draw and is listed in ``excluded_projects`` with the reason instead of being a candidate.
2. :func:`run` is a pure function of that snapshot: ``random.Random(seed)``, k weighted draws
   without replacement over the candidates in id order (``randrange`` over the integer
   cumulative weights), then for each drawn project, in draw order, m inspectors out of its
   eligible ones (id order) by a partial Fisher–Yates shuffle. Only ``randrange`` is used, whose
   output for a seed Python keeps stable; same snapshot and seed, same result.
3. :func:`create_draw` stores the snapshot, its SHA-256 over canonical JSON, the seed and the
   result. :func:`verify` recomputes the result from the stored snapshot and compares it, the
   hash and the weights, so an edited snapshot or result shows.

Exclusions (conflict of interest, 回避):

* ``affiliation``: the inspector works, or worked, for an enterprise on the project (its
  builder, contractors or supervisor); a former tie counts while it ended within
  ``cooling_off_days`` before the draw (default three years);
* ``recent``: the inspector inspected the project, or was drawn for it, within
  ``recent_days`` (default 365);
* ``district`` (``district_rule``): ``same`` keeps inspectors of the project's district (and
  city-level ones, district NULL); ``other`` keeps only those of another district (against
  local ties; city-level ones stay eligible); ``any`` (default) does not look at districts.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from alerts.risk import project_risks

ALGORITHM = "smartsite-spot-check/1"
MAX_SEED = 2**63 - 1
PROJECT_STATUSES = ("planned", "under_construction", "suspended", "completed")

DistrictRule = Literal["any", "same", "other"]
ProjectStatus = Literal["planned", "under_construction", "suspended", "completed"]


class DrawError(Exception):
    """A draw that cannot be made; the message says why."""


class DrawNotFoundError(DrawError):
    pass


class DrawParams(BaseModel):
    """What to draw and what to exclude."""

    model_config = ConfigDict(extra="forbid")

    projects: int = Field(ge=1, le=1000, description="How many projects to draw (k).")
    inspectors_per_project: int = Field(
        2, ge=1, le=20, description="How many inspectors per project (m)."
    )
    district: str | None = Field(
        None, max_length=12, description="Only projects of this district; None: the scope."
    )
    statuses: list[ProjectStatus] = Field(
        default_factory=lambda: ["under_construction"],
        min_length=1,
        description="Project statuses that may be drawn.",
    )
    base_weight: int = Field(
        10, ge=1, le=10_000, description="Weight of a project without risk points."
    )
    recent_days: int = Field(
        365,
        ge=0,
        le=3650,
        description="No inspector twice on a project within these days; 0: no such rule.",
    )
    cooling_off_days: int = Field(
        1095, ge=0, le=36500, description="A former affiliation counts this long after it ended."
    )
    district_rule: DistrictRule = Field(
        "any", description="same / other: inspectors of the project's district / another one."
    )


class DrawnProject(BaseModel):
    model_config = ConfigDict(frozen=True)

    project_id: str
    inspectors: list[str] = Field(description="Inspector ids, in draw order.")


# --- the snapshot ------------------------------------------------------------------------------


def canonical(doc: Any) -> bytes:
    """The canonical JSON bytes of a snapshot (sorted keys, no spaces, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(doc: Any) -> str:
    return hashlib.sha256(canonical(doc)).hexdigest()


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True, slots=True)
class _Inspector:
    id: str
    name: str
    district: str | None


def _inspectors(conn: psycopg.Connection) -> list[_Inspector]:
    rows = conn.execute(
        "SELECT id, name, district_code FROM inspectors WHERE active ORDER BY id"
    ).fetchall()
    return [_Inspector(*r) for r in rows]


def _enterprises(conn: psycopg.Connection, pids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pid, uscc in conn.execute(
        "SELECT DISTINCT project_id, uscc FROM project_enterprises WHERE project_id = ANY(%s)"
        " ORDER BY 1, 2",
        (pids,),
    ).fetchall():
        out.setdefault(pid, []).append(uscc.strip())
    return out


def _affiliations(conn: psycopg.Connection, since: date) -> dict[str, set[str]]:
    """inspector id → USCCs of current ties and of former ones ended on or after ``since``."""
    out: dict[str, set[str]] = {}
    for iid, uscc in conn.execute(
        "SELECT inspector_id, uscc FROM inspector_affiliations"
        " WHERE ended_on IS NULL OR ended_on >= %s",
        (since,),
    ).fetchall():
        out.setdefault(iid, set()).add(uscc.strip())
    return out


def _recent(conn: psycopg.Connection, pids: list[str], since: date) -> set[tuple[str, str]]:
    """(project, inspector) pairs inspected, or drawn, since ``since``."""
    rows = conn.execute(
        "SELECT i.project_id, ii.inspector_id FROM inspections i"
        " JOIN inspection_inspectors ii ON ii.inspection_id = i.id"
        " WHERE i.project_id = ANY(%(p)s) AND i.inspected_on >= %(since)s"
        " UNION SELECT a.project_id, a.inspector_id FROM spot_check_assignments a"
        " JOIN spot_check_draws d ON d.id = a.draw_id"
        " WHERE a.project_id = ANY(%(p)s) AND d.drawn_at >= %(since)s",
        {"p": pids, "since": since},
    ).fetchall()
    return {(p, i) for p, i in rows}


def _district_reason(rule: DistrictRule, project: str | None, inspector: str | None) -> str | None:
    if rule == "same" and inspector is not None and inspector != project:
        return f"district: the inspector is of district {inspector}, not the project's"
    if rule == "other" and inspector is not None and inspector == project:
        return f"district: the inspector is of the project's own district {inspector}"
    return None


def build_snapshot(
    conn: psycopg.Connection,
    params: DrawParams,
    seed: int,
    as_of: date,
    *,
    scope: list[str] | None = None,
) -> dict[str, Any]:
    """Every input of a draw, read now, as a JSON document (see the module doc).

    ``scope``: the projects the drawer may draw from (None: all)."""
    if not 0 <= seed <= MAX_SEED:
        raise DrawError(f"the seed must be between 0 and {MAX_SEED}")
    risks = project_risks(
        conn, as_of, pids=scope, district=params.district, statuses=list(params.statuses)
    )
    risks.sort(key=lambda r: r.project_id)
    pids = [r.project_id for r in risks]
    enterprises = _enterprises(conn, pids)
    inspectors = _inspectors(conn)
    ties = _affiliations(conn, as_of - timedelta(days=params.cooling_off_days))
    recent = (
        _recent(conn, pids, as_of - timedelta(days=params.recent_days))
        if params.recent_days
        else set()
    )

    projects: list[dict[str, Any]] = []
    excluded_projects: list[dict[str, Any]] = []
    exclusions: list[dict[str, Any]] = []
    for r in risks:
        eligible = 0
        for ins in inspectors:
            reasons: list[str] = []
            shared = sorted(ties.get(ins.id, set()) & set(enterprises.get(r.project_id, [])))
            if shared:
                reasons.append("affiliation: with " + ", ".join(shared))
            if (r.project_id, ins.id) in recent:
                reasons.append(f"recent: inspected or drawn within {params.recent_days} days")
            district = _district_reason(params.district_rule, r.district_code, ins.district)
            if district:
                reasons.append(district)
            if reasons:
                exclusions.append(
                    {"project_id": r.project_id, "inspector_id": ins.id, "reasons": reasons}
                )
            else:
                eligible += 1
        entry = {
            "project_id": r.project_id,
            "district_code": r.district_code,
            "enterprises": enterprises.get(r.project_id, []),
            "risk_score": r.score,
            "factors": [{"factor": f.factor, "points": f.points} for f in r.factors],
            "weight": params.base_weight + r.score,
        }
        if eligible < params.inspectors_per_project:
            excluded_projects.append(
                {
                    **entry,
                    "reason": f"only {eligible} eligible inspector(s), "
                    f"{params.inspectors_per_project} needed",
                }
            )
        else:
            projects.append(entry)
    return {
        "algorithm": ALGORITHM,
        "seed": seed,
        "as_of": as_of.isoformat(),
        "params": params.model_dump(mode="json"),
        "projects": projects,
        "excluded_projects": excluded_projects,
        "inspectors": [{"id": i.id, "district_code": i.district} for i in inspectors],
        "exclusions": exclusions,
    }


# --- the draw (pure) ---------------------------------------------------------------------------


def _weighted_pick(rng: random.Random, weights: list[int]) -> int:
    r = rng.randrange(sum(weights))
    for i, w in enumerate(weights):
        if r < w:
            return i
        r -= w
    raise AssertionError("unreachable: r < sum(weights)")


def _sample(rng: random.Random, items: list[str], m: int) -> list[str]:
    pool = list(items)
    for i in range(m):
        j = i + rng.randrange(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:m]


def run(snapshot: dict[str, Any]) -> list[DrawnProject]:
    """The result of a draw from its snapshot alone: same snapshot, same result."""
    if snapshot.get("algorithm") != ALGORITHM:
        raise DrawError(f"unknown draw algorithm {snapshot.get('algorithm')!r}")
    params = DrawParams.model_validate(snapshot["params"])
    # reproducibility is the point here: the seed is recorded and published
    rng = random.Random(int(snapshot["seed"]))  # noqa: S311
    candidates = sorted(snapshot["projects"], key=lambda p: p["project_id"])
    ids = [c["project_id"] for c in candidates]
    weights = [int(c["weight"]) for c in candidates]
    if any(w < 1 for w in weights):
        raise DrawError("every candidate needs a positive weight")
    inspectors = sorted(i["id"] for i in snapshot["inspectors"])
    excluded = {(e["project_id"], e["inspector_id"]) for e in snapshot["exclusions"]}
    out: list[DrawnProject] = []
    for _ in range(min(params.projects, len(ids))):
        i = _weighted_pick(rng, weights)
        pid = ids.pop(i)
        weights.pop(i)
        eligible = [x for x in inspectors if (pid, x) not in excluded]
        if len(eligible) < params.inspectors_per_project:
            raise DrawError(f"project {pid} has too few eligible inspectors")
        out.append(
            DrawnProject(
                project_id=pid,
                inspectors=_sample(rng, eligible, params.inspectors_per_project),
            )
        )
    return out


# --- stored draws ------------------------------------------------------------------------------


class Draw(BaseModel):
    """A stored draw."""

    id: int
    title: str
    district_code: str | None
    algorithm: str
    seed: int
    params: DrawParams
    snapshot: dict[str, Any]
    snapshot_sha256: str
    drawn_by: str
    drawn_at: datetime
    published_at: datetime | None
    published_by: str | None
    results: list[DrawnProject]


def create_draw(
    conn: psycopg.Connection,
    params: DrawParams,
    *,
    title: str,
    by: str,
    as_of: date,
    seed: int | None = None,
    scope: list[str] | None = None,
) -> int:
    """Snapshot the inputs, draw, and store all of it in one transaction; the draw's id."""
    seed = new_seed() if seed is None else seed
    snapshot = build_snapshot(conn, params, seed, as_of, scope=scope)
    results = run(snapshot)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO spot_check_draws (title, district_code, algorithm, seed, params,"
            " snapshot, snapshot_sha256, drawn_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (
                title,
                params.district,
                ALGORITHM,
                seed,
                json.dumps(params.model_dump(mode="json")),
                json.dumps(snapshot, ensure_ascii=False),
                digest(snapshot),
                by,
            ),
        ).fetchone()
        assert row is not None
        draw_id = int(row[0])
        for rank, d in enumerate(results, 1):
            conn.execute(
                "INSERT INTO spot_check_results (draw_id, rank, project_id) VALUES (%s, %s, %s)",
                (draw_id, rank, d.project_id),
            )
            for irank, iid in enumerate(d.inspectors, 1):
                conn.execute(
                    "INSERT INTO spot_check_assignments (draw_id, project_id, rank, inspector_id)"
                    " VALUES (%s, %s, %s, %s)",
                    (draw_id, d.project_id, irank, iid),
                )
    return draw_id


def stored_results(conn: psycopg.Connection, draw_id: int) -> list[DrawnProject]:
    rows = conn.execute(
        "SELECT r.project_id, coalesce(array_agg(a.inspector_id ORDER BY a.rank)"
        " FILTER (WHERE a.inspector_id IS NOT NULL), '{}')"
        " FROM spot_check_results r LEFT JOIN spot_check_assignments a"
        " ON a.draw_id = r.draw_id AND a.project_id = r.project_id"
        " WHERE r.draw_id = %s GROUP BY r.project_id, r.rank ORDER BY r.rank",
        (draw_id,),
    ).fetchall()
    return [DrawnProject(project_id=p, inspectors=list(i)) for p, i in rows]


_DRAW_COLS = (
    "id, title, district_code, algorithm, seed, params, snapshot, snapshot_sha256, drawn_by,"
    " drawn_at, published_at, published_by"
)


def _draw(conn: psycopg.Connection, row: tuple[Any, ...]) -> Draw:
    keys = [c.strip() for c in _DRAW_COLS.split(",")]
    d = dict(zip(keys, row, strict=True))
    return Draw(**d, results=stored_results(conn, d["id"]))


def get_draw(conn: psycopg.Connection, draw_id: int) -> Draw:
    row = conn.execute(f"SELECT {_DRAW_COLS} FROM spot_check_draws WHERE id = %s", (draw_id,))
    got = row.fetchone()
    if got is None:
        raise DrawNotFoundError(f"no draw {draw_id}")
    return _draw(conn, got)


def publish(conn: psycopg.Connection, draw_id: int, *, by: str) -> bool:
    """Publish the draw's result (一公开); False when it was published already."""
    get_draw(conn, draw_id)
    row = conn.execute(
        "UPDATE spot_check_draws SET published_at = now(), published_by = %s"
        " WHERE id = %s AND published_at IS NULL RETURNING id",
        (by, draw_id),
    ).fetchone()
    return row is not None


class Verification(BaseModel):
    """A stored draw recomputed from its snapshot."""

    draw_id: int
    ok: bool = Field(description="Hash, weights and result all match.")
    snapshot_sha256: str = Field(description="As recorded at draw time.")
    recomputed_sha256: str = Field(description="Of the snapshot as stored now.")
    hash_matches: bool
    seed_matches: bool = Field(description="The snapshot's seed is the draw's.")
    weights_consistent: bool = Field(description="Every weight is base_weight + risk score.")
    result_matches: bool
    stored: list[DrawnProject]
    recomputed: list[DrawnProject] | None = Field(description="None: the snapshot is unusable.")
    problems: list[str]


def verify(conn: psycopg.Connection, draw_id: int) -> Verification:
    d = get_draw(conn, draw_id)
    problems: list[str] = []
    now_hash = digest(d.snapshot)
    hash_ok = now_hash == d.snapshot_sha256
    if not hash_ok:
        problems.append("the snapshot is not the one recorded at draw time (hash differs)")
    seed_ok = d.snapshot.get("seed") == d.seed
    if not seed_ok:
        problems.append("the snapshot's seed is not the draw's seed")
    weights_ok = True
    try:
        base = int(d.snapshot["params"]["base_weight"])
        weights_ok = all(
            int(p["weight"]) == base + int(p["risk_score"])
            and int(p["risk_score"]) == sum(int(f["points"]) for f in p["factors"])
            for p in d.snapshot["projects"]
        )
    except (KeyError, TypeError, ValueError):
        weights_ok = False
    if not weights_ok:
        problems.append("a weight is not base_weight + the sum of its risk factors")
    recomputed: list[DrawnProject] | None
    try:
        recomputed = run(d.snapshot)
    except (DrawError, KeyError, TypeError, ValueError) as exc:
        recomputed = None
        problems.append(f"the snapshot cannot be drawn again: {exc}")
    result_ok = recomputed == d.results
    if recomputed is not None and not result_ok:
        problems.append("the stored result differs from the one the snapshot gives")
    return Verification(
        draw_id=d.id,
        ok=hash_ok and seed_ok and weights_ok and result_ok,
        snapshot_sha256=d.snapshot_sha256,
        recomputed_sha256=now_hash,
        hash_matches=hash_ok,
        seed_matches=seed_ok,
        weights_consistent=weights_ok,
        result_matches=result_ok,
        stored=d.results,
        recomputed=recomputed,
        problems=problems,
    )
