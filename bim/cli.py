"""``smartsite bim``: import models, show their tree, export geometry, place and resolve."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.tree import Tree

from smartsite.cli_support import console, database, or_exit, settings_or_exit

app = typer.Typer(
    help="BIM models: IFC import, spatial tree, geometry, device and zone placement.",
    no_args_is_help=True,
)
Project = Annotated[str, typer.Option(help="Project code.")]
Version = Annotated[int | None, typer.Option(help="Model version (default: the latest).")]


def _point(text: str | None) -> object:
    """``x,y,z`` in model metres → a Point (typer has no tuple-of-floats option syntax)."""
    from bim.models import Point

    if text is None:
        return None
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give x,y,z in metres, e.g. 12.5,3,6.2") from None
    return Point(x=x, y=y, z=z)


PointOpt = Annotated[
    str | None, typer.Option(help="A point in model coordinates, metres: x,y,z.", metavar="X,Y,Z")
]


@app.command(
    "import",
    epilog="IFC2X3, IFC4 and IFC4X3 STEP files (.ifc). The same file as the current version "
    "changes nothing; a changed file becomes the next version, and placements whose GlobalId "
    "is gone from it are listed and marked stale.",
)
def import_(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The IFC file to import.", exists=True)
    ],
    project: Annotated[str, typer.Option(help="Project code the model belongs to.")],
    create_project: Annotated[
        bool,
        typer.Option(help="Register the project (named after the IFC project) if it is not."),
    ] = False,
) -> None:
    """Import an IFC model as the project's next model version (all or nothing)."""
    from bim.errors import BimError
    from bim.store import import_model

    with database(settings_or_exit()) as conn:
        report = or_exit(
            lambda: import_model(conn, project, file, create_project=create_project), BimError
        )
    m = report.model
    if report.unchanged:
        console.print(f"{escape(file.name)} is already version {m.version} of {project}: unchanged")
        return
    c = m.counts
    console.print(
        f"imported {escape(file.name)} as version {m.version} of {escape(project)} "
        f"({m.schema_name}, sha256 {m.sha256[:12]}…) in {report.seconds:.2f} s: "
        f"{c['storeys']} storeys, {c['spaces']} spaces, {c['elements']} elements, "
        f"{c['tasks']} tasks"
    )
    if report.kept:
        console.print(f"  {len(report.kept)} placement(s) still resolve")
    for p in report.stale:
        what = p.device_id or p.zone
        console.print(f"  [yellow]stale {p.kind} {escape(str(what))}: {escape(p.reason)}[/yellow]")


@app.command("tree")
def tree(
    project: Project,
    version: Version = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tree as JSON.")] = False,
) -> None:
    """Print the model's project / site / building / storey / space tree and its schedule."""
    from bim.errors import BimError
    from bim.models import TreeNode
    from bim.store import tree as model_tree

    with database(settings_or_exit()) as conn:
        t = or_exit(lambda: model_tree(conn, project, version), BimError)
    if as_json:
        print(t.model_dump_json(indent=2))
        return

    def label(n: TreeNode) -> str:
        name = escape(n.name or n.long_name or "(unnamed)")
        text = f"[bold]{name}[/bold] {n.ifc_class} {n.global_id}"
        if n.elevation is not None:
            text += f" at {n.elevation:+.2f} m"
        if n.elements:
            total = sum(n.elements.values())
            top = ", ".join(f"{k} {v}" for k, v in sorted(n.elements.items(), key=lambda x: -x[1]))
            text += f" — {total} elements: {top}"
        return text

    def add(parent: Tree, n: TreeNode) -> None:
        branch = parent.add(label(n))
        for c in n.children:
            add(branch, c)

    m = t.model
    root = Tree(
        f"{escape(project)} model version {m.version}: {escape(m.file_name)} ({m.schema_name})"
    )
    for n in t.roots:
        add(root, n)
    if t.unplaced_elements:
        root.add(f"not in the spatial structure: {sum(t.unplaced_elements.values())} elements")
    console.print(root)
    if t.tasks:
        console.print(f"work schedule: {len(t.tasks)} tasks")
        for task in t.tasks:
            when = " → ".join(
                d.isoformat(sep=" ") for d in (task.schedule_start, task.schedule_finish) if d
            )
            console.print(
                f"  {escape(task.name or task.global_id)} {when} {task.schedule_duration or ''}"
            )


@app.command("glb")
def glb(
    project: Project,
    out: Annotated[Path, typer.Option(help="Directory to copy the storey GLB files into.")],
    version: Version = None,
) -> None:
    """Make (or take from the cache) one GLB file per storey and copy them to a directory."""
    from bim.errors import BimError
    from bim.store import glb_cache, manifest, storey_glb

    settings = settings_or_exit()
    cache = glb_cache(settings)
    out.mkdir(parents=True, exist_ok=True)
    with database(settings) as conn:
        man = or_exit(lambda: manifest(conn, cache, project, version), BimError)
        for s in man.storeys:
            path = or_exit(lambda s=s: storey_glb(conn, cache, project, s.id, version), BimError)
            shutil.copyfile(path, out / s.file)
            console.print(f"{escape(s.name or s.id)}: {s.file} ({len(s.products)} products)")
    (out / "manifest.json").write_text(man.model_dump_json(indent=1))
    console.print(f"wrote {len(man.storeys)} GLB files and manifest.json to {out}/")


@app.command("place-device")
def place_device(
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="Registered device id.")],
    project: Project,
    target: Annotated[
        str | None, typer.Option(help="GlobalId of the space, storey or element it is at.")
    ] = None,
    point: PointOpt = None,
    note: Annotated[str, typer.Option(help="Free text, e.g. 'north-east corner'.")] = "",
) -> None:
    """Place (or move) a device at a space or element of the model, or at a point."""
    from bim.errors import BimError
    from bim.models import DevicePlacementIn
    from bim.placement import place_device as place

    p = or_exit(
        lambda: DevicePlacementIn(
            project_id=project, device_id=device, target_id=target, point=_point(point), note=note
        ),
        ValidationError,
        code=2,
    )
    with database(settings_or_exit()) as conn:
        pid = or_exit(lambda: place(conn, p), BimError)
    console.print(f"placed {escape(device)} (placement {pid})")


@app.command("place-zone")
def place_zone(
    zone: Annotated[str, typer.Argument(metavar="ZONE", help="Zone name, unique per project.")],
    project: Project,
    target: Annotated[
        str | None, typer.Option(help="GlobalId of a space or an element (shaft, opening...).")
    ] = None,
    center: PointOpt = None,
    radius: Annotated[
        float | None, typer.Option(help="With --center: a circle (e.g. a crane's radius), m.")
    ] = None,
    danger: Annotated[bool, typer.Option(help="Entering it is an intrusion alert.")] = True,
) -> None:
    """Define (or redefine) a named zone: a space, an element's footprint, or a circle."""
    from bim.errors import BimError
    from bim.models import ZoneIn
    from bim.placement import place_zone as place

    z = or_exit(
        lambda: ZoneIn(
            project_id=project,
            zone=zone,
            target_id=target,
            center=_point(center),
            radius=radius,
            danger=danger,
        ),
        ValidationError,
        code=2,
    )
    with database(settings_or_exit()) as conn:
        pid = or_exit(lambda: place(conn, z), BimError)
    console.print(f"zone {escape(zone)} defined (placement {pid})")


@app.command("link-camera-zone")
def link_camera_zone(
    camera: Annotated[str, typer.Argument(metavar="CAMERA", help="The camera's device id.")],
    image_zone: Annotated[str, typer.Argument(help="The zone name the edge reports.")],
    zone: Annotated[str, typer.Argument(help="The named BIM zone it shows.")],
    project: Project,
) -> None:
    """Link a camera's image zone to a named BIM zone, so its alerts resolve on the model."""
    from bim.errors import BimError
    from bim.models import CameraZoneIn
    from bim.placement import link_camera_zone as link

    c = or_exit(
        lambda: CameraZoneIn(
            project_id=project, device_id=camera, image_zone=image_zone, zone=zone
        ),
        ValidationError,
        code=2,
    )
    with database(settings_or_exit()) as conn:
        pid = or_exit(lambda: link(conn, c), BimError)
    console.print(f"{escape(camera)}:{escape(image_zone)} → {escape(zone)} (placement {pid})")


@app.command("placements")
def placements(project: Project) -> None:
    """List the project's device, zone and camera-zone placements and whether they resolve."""
    from bim.placement import list_placements

    with database(settings_or_exit()) as conn:
        rows = list_placements(conn, project)
    for p in rows:
        what = p.device_id if p.kind == "device" else p.zone
        where = p.target_id or (f"point {p.point.x},{p.point.y},{p.point.z}" if p.point else "")
        if p.kind == "camera_zone":
            where = f"→ zone {p.linked_zone}"
        colour = "green" if p.status == "resolved" else "yellow"
        console.print(
            f"{p.id:>4} {p.kind:<11} {escape(str(what)):<20} {escape(where)} "
            f"[{colour}]{p.status}[/{colour}]"
        )
    if not rows:
        console.print(f"no placements in {escape(project)}")


@app.command("resolve")
def resolve(
    project: Project,
    device: Annotated[str, typer.Option(help="Device the alert came from.")],
    zone: Annotated[str | None, typer.Option(help="Zone the alert names, if any.")] = None,
) -> None:
    """Where on the building an alert of this device (and zone) is: what alerts store."""
    from bim.placement import resolve as where

    with database(settings_or_exit()) as conn:
        print(where(conn, project, device, zone).model_dump_json(indent=2, exclude_none=True))
