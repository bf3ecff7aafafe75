"""Devices and zones placed on the model, and where an alert is on the building.

A placement names a GlobalId (or a point in the model's world frame, metres), never a model
version's row, so it survives re-imports: each import re-checks it and marks it ``stale``
when its GlobalId is gone. ``resolve`` is what the alert engine calls.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
import psycopg
import shapely
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bim import geometry
from bim.errors import NoModelError, PlacementError
from bim.models import (
    BimContext,
    BimRef,
    CameraZoneIn,
    DevicePlacementIn,
    PlacementOut,
    PlacementRef,
    Point,
    ZoneIn,
)
from bim.store import get_model, load_ifc

# metres: a sensor on the slab or a camera under the ceiling is still in the space; a point
# lower than that by more than a slab's thickness is not
_SPACE_Z_SLACK = 0.15
_STOREY_Z_TOL = 0.05  # a point on the finished floor level belongs to that storey


def _device_project(conn: psycopg.Connection, device_id: str) -> tuple[str, str]:
    row = conn.execute(
        "SELECT project_id, kind FROM devices WHERE id = %s", (device_id,)
    ).fetchone()
    if row is None:
        raise PlacementError(f"device {device_id!r} is not registered")
    return row[0], row[1]


def _target(conn: psycopg.Connection, model_id: int, gid: str) -> dict[str, Any] | None:
    """The spatial node or element with this GlobalId in a model version."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT 'node' AS what, global_id, kind, ifc_class, name, building_id, storey_id, "
            "CASE WHEN kind = 'space' THEN global_id END AS space_id, footprint, z_min, z_max "
            "FROM bim_nodes WHERE model_id = %(m)s AND global_id = %(g)s "
            "UNION ALL SELECT 'element', global_id, 'element', ifc_class, name, building_id, "
            "storey_id, space_id, NULL, NULL, NULL "
            "FROM bim_elements WHERE model_id = %(m)s AND global_id = %(g)s",
            {"m": model_id, "g": gid},
        )
        return cur.fetchone()


def _require_target(conn: psycopg.Connection, project_id: str, gid: str) -> tuple[int, dict]:
    model = get_model(conn, project_id)
    t = _target(conn, model.id, gid)
    if t is None:
        raise PlacementError(
            f"GlobalId {gid!r} is neither a spatial node nor an element of model version "
            f"{model.version} of {project_id!r}"
        )
    return model.id, t


def place_device(conn: psycopg.Connection, p: DevicePlacementIn) -> int:
    """Place (or move) a device; returns the placement id."""
    project, _ = _device_project(conn, p.device_id)
    if project != p.project_id:
        raise PlacementError(f"device {p.device_id!r} belongs to project {project!r}")
    if p.target_id is not None:
        model_id, _ = _require_target(conn, p.project_id, p.target_id)
    else:
        model_id = get_model(conn, p.project_id).id
    pt = p.point
    row = conn.execute(
        "INSERT INTO bim_placements (project_id, kind, device_id, target_id, x, y, z, "
        "resolved_model_id, note) VALUES (%s, 'device', %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (device_id) WHERE kind = 'device' DO UPDATE SET "
        "project_id = EXCLUDED.project_id, target_id = EXCLUDED.target_id, x = EXCLUDED.x, "
        "y = EXCLUDED.y, z = EXCLUDED.z, resolved_model_id = EXCLUDED.resolved_model_id, "
        "note = EXCLUDED.note, status = 'resolved', stale_since_model_id = NULL, "
        "updated_at = now() RETURNING id",
        (
            p.project_id,
            p.device_id,
            p.target_id,
            pt.x if pt else None,
            pt.y if pt else None,
            pt.z if pt else None,
            model_id,
            p.note,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _zone_outline(
    target: dict[str, Any], ifc: ifcopenshell.file | None
) -> tuple[dict[str, Any] | None, float | None, float | None]:
    if target["what"] == "node":
        return target["footprint"], target["z_min"], target["z_max"]
    if ifc is None:
        return None, None, None
    try:
        product = ifc.by_guid(target["global_id"])
    except RuntimeError:
        return None, None, None
    o = geometry.outlines(ifc, [product]).get(target["global_id"])
    return (o.footprint, o.z_min, o.z_max) if o else (None, None, None)


def _circle(center: Point, radius: float) -> dict[str, Any]:
    circle = shapely.Point(center.x, center.y).buffer(radius, quad_segs=16)
    return shapely.geometry.mapping(shapely.set_precision(circle, 1e-3))


def place_zone(conn: psycopg.Connection, z: ZoneIn) -> int:
    """Define (or redefine) a named zone on the model; returns the placement id.

    Its outline is computed now against the current version: a space's from the import, an
    element's from its geometry, a circle's from centre and radius.
    """
    if z.target_id is not None:
        model_id, target = _require_target(conn, z.project_id, z.target_id)
        ifc = load_ifc(conn, model_id) if target["what"] == "element" else None
        footprint, z_min, z_max = _zone_outline(target, ifc)
        x = y = zc = radius = None
    else:
        assert z.center is not None and z.radius is not None
        model_id = get_model(conn, z.project_id).id
        footprint, z_min, z_max = _circle(z.center, z.radius), None, None
        x, y, zc, radius = z.center.x, z.center.y, z.center.z, z.radius
    row = conn.execute(
        "INSERT INTO bim_placements (project_id, kind, zone, danger, target_id, x, y, z, radius, "
        "footprint, z_min, z_max, resolved_model_id, note) "
        "VALUES (%s, 'zone', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (project_id, zone) WHERE kind = 'zone' DO UPDATE SET "
        "danger = EXCLUDED.danger, target_id = EXCLUDED.target_id, x = EXCLUDED.x, "
        "y = EXCLUDED.y, z = EXCLUDED.z, radius = EXCLUDED.radius, "
        "footprint = EXCLUDED.footprint, z_min = EXCLUDED.z_min, z_max = EXCLUDED.z_max, "
        "resolved_model_id = EXCLUDED.resolved_model_id, note = EXCLUDED.note, "
        "status = 'resolved', stale_since_model_id = NULL, updated_at = now() RETURNING id",
        (
            z.project_id,
            z.zone,
            z.danger,
            z.target_id,
            x,
            y,
            zc,
            radius,
            Jsonb(footprint) if footprint is not None else None,
            z_min,
            z_max,
            model_id,
            z.note,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def link_camera_zone(conn: psycopg.Connection, c: CameraZoneIn) -> int:
    """Link a camera's image zone to a named BIM zone; returns the placement id."""
    project, kind = _device_project(conn, c.device_id)
    if project != c.project_id:
        raise PlacementError(f"device {c.device_id!r} belongs to project {project!r}")
    if kind != "camera":
        raise PlacementError(f"device {c.device_id!r} is a {kind}, not a camera")
    zone = conn.execute(
        "SELECT id, resolved_model_id FROM bim_placements "
        "WHERE project_id = %s AND kind = 'zone' AND zone = %s",
        (c.project_id, c.zone),
    ).fetchone()
    if zone is None:
        raise PlacementError(f"project {c.project_id!r} has no zone {c.zone!r}; place it first")
    row = conn.execute(
        "INSERT INTO bim_placements (project_id, kind, device_id, zone, linked_zone_id, "
        "resolved_model_id) VALUES (%s, 'camera_zone', %s, %s, %s, %s) "
        "ON CONFLICT (device_id, zone) WHERE kind = 'camera_zone' DO UPDATE SET "
        "linked_zone_id = EXCLUDED.linked_zone_id, updated_at = now() RETURNING id",
        (c.project_id, c.device_id, c.image_zone, zone[0], zone[1]),
    ).fetchone()
    assert row is not None
    return int(row[0])


def remove_placement(conn: psycopg.Connection, project_id: str, placement_id: int) -> bool:
    """Remove a placement (a zone's camera links go with it); False if there was none."""
    cur = conn.execute(
        "DELETE FROM bim_placements WHERE project_id = %s AND id = %s", (project_id, placement_id)
    )
    return cur.rowcount > 0


def list_placements(conn: psycopg.Connection, project_id: str) -> list[PlacementOut]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT p.id, p.project_id, p.kind, p.device_id, p.zone, p.danger, p.target_id, "
            "p.x, p.y, p.z, p.radius, l.zone AS linked_zone, p.footprint, p.z_min, p.z_max, "
            "p.status, r.version AS resolved_version, s.version AS stale_since_version, p.note "
            "FROM bim_placements p LEFT JOIN bim_placements l ON l.id = p.linked_zone_id "
            "LEFT JOIN bim_models r ON r.id = p.resolved_model_id "
            "LEFT JOIN bim_models s ON s.id = p.stale_since_model_id "
            "WHERE p.project_id = %s ORDER BY p.kind, p.id",
            (project_id,),
        )
        rows = cur.fetchall()
    out = []
    for r in rows:
        x, y, z = r.pop("x"), r.pop("y"), r.pop("z")
        point = Point(x=x, y=y, z=z) if x is not None else None
        out.append(PlacementOut(point=point, **r))
    return out


def _ref(p: PlacementOut, reason: str = "") -> PlacementRef:
    return PlacementRef(
        id=p.id,
        kind=p.kind,
        device_id=p.device_id,
        zone=p.zone,
        target_id=p.target_id,
        reason=reason,
    )


def recheck_placements(
    conn: psycopg.Connection, project_id: str, model_id: int, ifc: ifcopenshell.file
) -> tuple[list[PlacementRef], list[PlacementRef]]:
    """After importing ``model_id``: keep what still resolves (zones get outlines from the new
    geometry), mark stale what does not; returns (kept, stale). Called inside the import's
    transaction. Points and circles keep their coordinates: a new version of the same model
    is assumed to keep its world frame."""
    version = conn.execute("SELECT version FROM bim_models WHERE id = %s", (model_id,)).fetchone()
    assert version is not None
    kept: list[PlacementRef] = []
    stale: list[PlacementRef] = []
    stale_zones: set[str] = set()
    placements = list_placements(conn, project_id)
    for p in placements:
        if p.kind == "camera_zone" or p.target_id is None:
            continue
        target = _target(conn, model_id, p.target_id)
        if target is None:
            reason = f"GlobalId {p.target_id} is not in model version {version[0]}"
            conn.execute(
                "UPDATE bim_placements SET status = 'stale', stale_since_model_id = "
                "coalesce(stale_since_model_id, %s), updated_at = now() WHERE id = %s",
                (model_id, p.id),
            )
            stale.append(_ref(p, reason))
            if p.kind == "zone" and p.zone:
                stale_zones.add(p.zone)
            continue
        if p.kind == "zone":
            footprint, z_min, z_max = _zone_outline(target, ifc)
            conn.execute(
                "UPDATE bim_placements SET footprint = %s, z_min = %s, z_max = %s WHERE id = %s",
                (Jsonb(footprint) if footprint is not None else None, z_min, z_max, p.id),
            )
        kept.append(_ref(p))
    for p in placements:
        if p.kind == "camera_zone" and p.linked_zone in stale_zones:
            stale.append(_ref(p, f"its zone {p.linked_zone!r} no longer resolves"))
        elif p.kind == "camera_zone" or p.target_id is None:
            kept.append(_ref(p))
    # everything not stale now resolves against the new version
    conn.execute(
        "UPDATE bim_placements SET status = 'resolved', resolved_model_id = %s, "
        "stale_since_model_id = NULL WHERE project_id = %s AND NOT id = ANY(%s)",
        (model_id, project_id, [r.id for r in stale if r.kind != "camera_zone"]),
    )
    conn.execute(
        "UPDATE bim_placements c SET status = z.status FROM bim_placements z "
        "WHERE c.project_id = %s AND c.kind = 'camera_zone' AND z.id = c.linked_zone_id",
        (project_id,),
    )
    return kept, stale


def _refs(conn: psycopg.Connection, model_id: int, gids: list[str]) -> dict[str, BimRef]:
    rows = conn.execute(
        "SELECT global_id, name, ifc_class FROM bim_nodes WHERE model_id = %(m)s "
        "AND global_id = ANY(%(g)s) UNION ALL SELECT global_id, name, ifc_class "
        "FROM bim_elements WHERE model_id = %(m)s AND global_id = ANY(%(g)s)",
        {"m": model_id, "g": gids},
    ).fetchall()
    return {g: BimRef(global_id=g, name=n, ifc_class=c) for g, n, c in rows}


def _at_point(conn: psycopg.Connection, model_id: int, pt: Point) -> dict[str, str | None]:
    """Building, storey and space ids of a point: the space whose outline and height hold it,
    else the highest storey at or below it."""
    best: tuple[float, dict[str, str | None]] | None = None
    where = shapely.Point(pt.x, pt.y)
    for gid, building, storey, fp in conn.execute(
        "SELECT global_id, building_id, storey_id, footprint FROM bim_nodes "
        "WHERE model_id = %s AND kind = 'space' AND footprint IS NOT NULL "
        "AND %s BETWEEN z_min - %s AND z_max + %s",
        (model_id, pt.z, _SPACE_Z_SLACK, _SPACE_Z_SLACK),
    ):
        shape = shapely.geometry.shape(fp)
        if shape.covers(where) and (best is None or shape.area < best[0]):
            best = (shape.area, {"building": building, "storey": storey, "space": gid})
    if best is not None:
        return best[1]
    row = conn.execute(
        "SELECT building_id, global_id FROM bim_nodes WHERE model_id = %s AND kind = 'storey' "
        "ORDER BY (elevation IS NOT NULL AND elevation <= %s + %s) DESC, "
        "CASE WHEN elevation <= %s + %s THEN -elevation ELSE elevation END, position LIMIT 1",
        (model_id, pt.z, _STOREY_Z_TOL, pt.z, _STOREY_Z_TOL),
    ).fetchone()
    return {"building": row[0], "storey": row[1], "space": None} if row else {}


def _context_ids(conn: psycopg.Connection, model_id: int, p: dict[str, Any]) -> dict[str, Any]:
    if p["target_id"] is not None:
        t = _target(conn, model_id, p["target_id"])
        if t is None:
            return {}
        return {
            "building": t["building_id"],
            "storey": t["storey_id"],
            "space": t["space_id"],
            "element": t["global_id"] if t["what"] == "element" else None,
        }
    if p["x"] is not None:
        return _at_point(conn, model_id, Point(x=p["x"], y=p["y"], z=p["z"]))
    return {}


def resolve(
    conn: psycopg.Connection, project_id: str, device_id: str, zone: str | None = None
) -> BimContext:
    """Where on the building an alert of ``device_id`` (in image zone ``zone``) is.

    Order: the camera's image zone linked to a BIM zone; a BIM zone of that name; the
    device's own placement. Never raises for a missing model or placement: the status says.
    """
    base: dict[str, Any] = {"project_id": project_id, "device_id": device_id, "zone": zone}
    try:
        current = get_model(conn, project_id)
    except NoModelError:
        return BimContext(status="no_model", **base)
    cols = (
        "p.id, p.kind, p.zone, p.danger, p.target_id, p.x, p.y, p.z, p.status, "
        "p.resolved_model_id, p.note"
    )
    chosen: dict[str, Any] | None = None
    via = None
    note = ""
    with conn.cursor(row_factory=dict_row) as cur:
        if zone is not None:
            cur.execute(
                f"SELECT {cols} FROM bim_placements c JOIN bim_placements p "
                "ON p.id = c.linked_zone_id WHERE c.kind = 'camera_zone' AND c.device_id = %s "
                "AND c.zone = %s AND c.project_id = %s",
                (device_id, zone, project_id),
            )
            chosen, via = cur.fetchone(), "camera_zone"
            if chosen is None:
                cur.execute(
                    f"SELECT {cols} FROM bim_placements p WHERE p.project_id = %s "
                    "AND p.kind = 'zone' AND p.zone = %s",
                    (project_id, zone),
                )
                chosen, via = cur.fetchone(), "zone"
            if chosen is None:
                note = f"zone {zone!r} is not on the model; placed by the device"
        if chosen is None:
            cur.execute(
                f"SELECT {cols} FROM bim_placements p WHERE p.project_id = %s "
                "AND p.kind = 'device' AND p.device_id = %s",
                (project_id, device_id),
            )
            chosen, via = cur.fetchone(), "device"
    if chosen is None:
        return BimContext(status="unplaced", model_version=current.version, note=note, **base)
    stale = chosen["status"] == "stale"
    model_id = chosen["resolved_model_id"] if stale else current.id
    if model_id is None:  # the version it resolved in was deleted
        return BimContext(status="stale", via=via, note="placed on a deleted version", **base)
    version = (
        current.version
        if model_id == current.id
        else conn.execute("SELECT version FROM bim_models WHERE id = %s", (model_id,)).fetchone()[0]  # type: ignore[index]
    )
    ids = _context_ids(conn, model_id, chosen)
    refs = _refs(conn, model_id, [g for g in ids.values() if g])
    if stale:
        note = (
            f"GlobalId {chosen['target_id']} is not in the current version "
            f"{current.version}; context from version {version}"
        )
    point = Point(x=chosen["x"], y=chosen["y"], z=chosen["z"]) if chosen["x"] is not None else None
    return BimContext(
        status="stale" if stale else "resolved",
        via=via,  # type: ignore[arg-type]
        model_version=version,
        building=refs.get(ids.get("building") or ""),
        storey=refs.get(ids.get("storey") or ""),
        space=refs.get(ids.get("space") or ""),
        element=refs.get(ids.get("element") or ""),
        point=point,
        danger=chosen["danger"] if chosen["kind"] == "zone" else None,
        note=note or chosen["note"],
        **{**base, "zone": chosen["zone"] if chosen["kind"] == "zone" else zone},
    )
