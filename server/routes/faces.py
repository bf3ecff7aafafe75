"""A worker's face enrolment: enrol from photos with a recorded consent, show it, remove it.

Admins, and officers of a project the worker is on, enrol and remove; regulators may also see
whether a worker is enrolled. A worker out of scope reads as absent (404). Embeddings never
leave: no response carries them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field, ValidationError

from models.registry import ModelError
from server import faces
from server.deps import Conn, SettingsDep, require
from server.errors import ApiError, not_found
from server.principal import Principal
from server.routes.registry import person_visible
from server.uploads import read_capped

router = APIRouter(prefix="/api/workers/{person_id}/face", tags=["faces"])

Enroller = Annotated[Principal, Depends(require("admin", "officer"))]
Reader = Annotated[Principal, Depends(require("admin", "regulator", "officer"))]


class ConsentOut(BaseModel):
    given_by: str
    given_at: datetime
    method: str = Field(description="written or electronic.")
    document: str = Field(description="Reference of the consent form / record.")
    recorded_by: str = Field(description="Who recorded the consent and enrolled the face.")


class FaceEnrolmentOut(BaseModel):
    """Whether and how a worker's face is enrolled; never the embeddings."""

    person_id: str
    enrolled: bool
    enrolled_at: datetime | None = None
    photo_count: int | None = None
    model_sha256: str | None = Field(None, description="The recognizer the enrolment is for.")
    consent: ConsentOut | None = None


def _scoped_person(conn: Conn, p: Principal, person_id: str) -> None:
    if not person_visible(conn, p, person_id):
        raise not_found("worker")


def _out(conn: Conn, person_id: str) -> FaceEnrolmentOut:
    row = faces.enrolment(conn, person_id)
    if row is None:
        return FaceEnrolmentOut(person_id=person_id, enrolled=False)
    return FaceEnrolmentOut(
        person_id=person_id,
        enrolled=True,
        enrolled_at=row["enrolled_at"],  # type: ignore[arg-type]
        photo_count=row["photo_count"],  # type: ignore[arg-type]
        model_sha256=row["model_sha256"],  # type: ignore[arg-type]
        consent=ConsentOut(
            given_by=row["consent_given_by"],  # type: ignore[arg-type]
            given_at=row["consent_given_at"],  # type: ignore[arg-type]
            method=row["consent_method"],  # type: ignore[arg-type]
            document=row["consent_document"],  # type: ignore[arg-type]
            recorded_by=row["recorded_by"],  # type: ignore[arg-type]
        ),
    )


def _read_photos(photos: list[UploadFile], limit: int) -> list[tuple[str, bytes]]:
    if not 1 <= len(photos) <= faces.MAX_PHOTOS:
        raise ApiError(
            422,
            "invalid",
            f"send 1 to {faces.MAX_PHOTOS} photos (got {len(photos)})",
            {"photos": len(photos)},
        )
    read = []
    for i, photo in enumerate(photos):
        name = photo.filename or f"photo {i + 1}"
        read.append((name, read_capped(photo, limit, f"photo {i + 1} ({name!r})")))
    return read


@router.post(
    "",
    status_code=201,
    responses={
        404: {"description": "No such worker in the caller's scope."},
        409: {"description": "The worker has left."},
        422: {"description": "Consent missing, or a photo without exactly one face."},
        503: {"description": "The face models are not installed (`smartsite models fetch`)."},
    },
)
def enrol_worker_face(
    person_id: str,
    p: Enroller,
    conn: Conn,
    request: Request,
    settings: SettingsDep,
    photos: Annotated[
        list[UploadFile], File(description="1 to 5 photos, each showing the worker's face alone.")
    ],
    consent_given_by: Annotated[str, Form(description="Who consented (the worker).")],
    consent_given_at: Annotated[datetime, Form(description="When (ISO 8601 with time zone).")],
    consent_method: Annotated[
        Literal["written", "electronic"], Form(description="Signed form or electronic.")
    ],
    consent_document: Annotated[str, Form(description="Reference of the consent record.")],
) -> FaceEnrolmentOut:
    """Enrol (or re-enrol) the worker's face from photos, with the worker's recorded consent.
    Replaces an earlier enrolment."""
    _scoped_person(conn, p, person_id)
    try:
        consent = faces.Consent(
            given_by=consent_given_by.strip(),
            given_at=consent_given_at,
            method=consent_method,
            document=consent_document.strip(),
        )
    except ValidationError as exc:
        raise ApiError(
            422, "invalid", "the consent is incomplete", exc.errors(include_url=False)
        ) from None
    if consent.given_at.tzinfo is None:
        raise ApiError(422, "invalid", "consent_given_at needs a time zone (e.g. +08:00)")
    status = conn.execute("SELECT status FROM persons WHERE id = %s", (person_id,)).fetchone()
    if status is not None and status[0] == "left":
        raise ApiError(409, "conflict", "the worker has left: faces are not enrolled")
    data = _read_photos(photos, settings.upload_max_bytes)
    try:
        models = faces.face_models(settings)
    except ModelError as exc:
        raise ApiError(503, "unavailable", f"face recognition is not installed: {exc}") from None
    try:
        embeddings = faces.embed_photos(models, data)
    except faces.PhotoError as exc:
        raise ApiError(
            422,
            "invalid",
            str(exc),
            {"photo": exc.name, "index": exc.index, "faces": exc.faces},
        ) from None
    faces.enrol(
        conn,
        request.app.state.secret_key,
        person_id,
        embeddings,
        models.recognizer_sha256,
        consent,
        recorded_by=p.label,
    )
    return _out(conn, person_id)


@router.get("", responses={404: {"description": "No such worker in the caller's scope."}})
def get_worker_face_enrolment(person_id: str, p: Reader, conn: Conn) -> FaceEnrolmentOut:
    """Whether the worker's face is enrolled, when, from how many photos, and the consent."""
    _scoped_person(conn, p, person_id)
    return _out(conn, person_id)


@router.delete(
    "",
    status_code=204,
    responses={404: {"description": "No such worker in scope, or no face enrolled."}},
)
def remove_worker_face(person_id: str, p: Enroller, conn: Conn) -> Response:
    """Delete the worker's face enrolment (the embeddings are erased; the log keeps who and
    when)."""
    _scoped_person(conn, p, person_id)
    if not faces.remove(conn, person_id, p.label):
        raise not_found("face enrolment")
    return Response(status_code=204)
