"""A project's BIM model: the current version with its spatial tree, per-storey geometry for
the viewer (GLB, cached, ETag), device and zone placements, and IFC upload."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from bim import placement, store
from bim.errors import BimError, BimImportError, NoModelError, NotIfcError
from bim.geometry import OUTSIDE, Manifest
from bim.models import ImportReport, ModelTree, PlacementOut
from server.deps import Conn, Current, SettingsDep, require, scoped_project
from server.errors import ApiError, not_found
from server.principal import Principal
from smartsite.protocol.topics import SEGMENT_PATTERN

router = APIRouter(prefix="/api/projects/{project_id}/bim", tags=["bim"])

# Largest IFC file accepted by upload. Real project models run to tens of MB; the whole file
# is held in memory (and stored in the database), so the cap guards the server.
IFC_MAX_BYTES = 200 * 1024 * 1024
_CHUNK = 1024 * 1024
# IFC GlobalIds are 22 characters of [0-9A-Za-z_$]; "outside" is what no storey contains.
_STOREY_RE = re.compile(r"^(?:[0-9A-Za-z_$]{1,64})$")
GLB = "model/gltf-binary"
ProjectId = Annotated[str, Path(pattern=SEGMENT_PATTERN, description="Project id.")]


def _no_model(exc: BimError) -> ApiError:
    return ApiError(404, "not_found", str(exc))


@router.get("")
def project_bim(project_id: ProjectId, p: Current, conn: Conn) -> ModelTree:
    """The current model version (file, schema, counts) with its spatial tree and tasks."""
    scoped_project(conn, p, project_id)
    try:
        return store.tree(conn, project_id)
    except NoModelError as exc:
        raise _no_model(exc) from None


@router.get("/manifest")
def bim_manifest(project_id: ProjectId, p: Current, conn: Conn, settings: SettingsDep) -> Manifest:
    """Which storey GLB shows which GlobalId (what a viewer loads first)."""
    scoped_project(conn, p, project_id)
    try:
        return store.manifest(conn, store.glb_cache(settings), project_id)
    except NoModelError as exc:
        raise _no_model(exc) from None


@router.get(
    "/storeys/{storey_id}.glb",
    response_class=Response,
    responses={200: {"content": {GLB: {}}}, 304: {"description": "Not modified (ETag)."}},
)
def storey_glb(
    project_id: ProjectId,
    storey_id: str,
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    request: Request,
) -> Response:
    """One storey of the current model as glTF binary (nodes named by GlobalId), made on the
    first request and cached; ``outside`` is what no storey contains."""
    scoped_project(conn, p, project_id)
    if storey_id != OUTSIDE and not _STOREY_RE.match(storey_id):
        raise not_found("storey")
    try:
        model = store.get_model(conn, project_id)
        # the file never changes for a model's hash and storey: they are the ETag
        etag = f'"{model.sha256[:32]}-{storey_id.replace("$", "-")}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if etag in (request.headers.get("if-none-match") or "").replace(" ", "").split(","):
            return Response(status_code=304, headers=headers)
        path = store.storey_glb(conn, store.glb_cache(settings), project_id, storey_id)
    except NoModelError as exc:
        raise _no_model(exc) from None
    except BimError as exc:  # no such storey in this version
        raise ApiError(404, "not_found", str(exc)) from None
    return Response(path.read_bytes(), media_type=GLB, headers=headers)


@router.get("/placements")
def bim_placements(project_id: ProjectId, p: Current, conn: Conn) -> list[PlacementOut]:
    """Devices and zones placed on the model (stale ones: their GlobalId left the model)."""
    scoped_project(conn, p, project_id)
    return placement.list_placements(conn, project_id)


async def _read_capped(upload: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413,
                "too_large",
                f"the file is larger than the {limit / 1024 / 1024:g} MiB an IFC upload may be",
                {"limit_bytes": limit},
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=201,
    responses={
        200: {"description": "The file is the current version already; nothing stored."},
        413: {"description": "The file is too large."},
        415: {"description": "Not an IFC file."},
        422: {"description": "An IFC file that cannot be imported (the message says why)."},
    },
)
async def upload_bim(
    project_id: ProjectId,
    file: Annotated[UploadFile, File(description="The IFC file (STEP, .ifc).")],
    conn: Conn,
    response: Response,
    p: Annotated[Principal, Depends(require("admin", "officer"))],
) -> ImportReport:
    """Import an IFC file as the project's next model version; placements are re-checked
    against it (those whose GlobalId is gone are kept, marked stale)."""
    scoped_project(conn, p, project_id)
    data = await _read_capped(file, IFC_MAX_BYTES)
    # a display name only: no path, no control characters (NUL cannot be stored)
    base = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in base if c.isprintable())[:200] or "upload.ifc"
    try:
        # parsing is CPU-bound and blocking: keep it off the event loop
        report = await run_in_threadpool(store.import_model, conn, project_id, data, file_name=name)
    except NotIfcError as exc:
        raise ApiError(415, "not_ifc", str(exc)) from None
    except BimImportError as exc:
        raise ApiError(422, "invalid_ifc", str(exc)) from None
    if report.unchanged:
        response.status_code = 200
    return report
