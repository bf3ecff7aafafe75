"""Face enrolment on the hub: embeddings from photos, stored encrypted with a recorded consent,
removed on request or when the worker leaves (a trigger in 0015_faces.sql), and the gallery a
project's edge devices receive on the retained config topic.

Embeddings are biometric data: they leave this module only in ``project_gallery`` (for the
project's own edge devices), never through the API.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from smartsite.secrets import fernet

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from edge.faces import FaceModels
    from smartsite.settings import Settings

MAX_PHOTOS = 5
_PURPOSE = "face"


class Consent(BaseModel):
    """The worker's consent to the processing of their face (biometric data)."""

    model_config = ConfigDict(extra="forbid")

    given_by: str = Field(min_length=1, max_length=200, description="Who consented (the worker).")
    given_at: datetime = Field(description="When the consent was given (with time zone).")
    method: Literal["written", "electronic"] = Field(
        description="How: a signed paper form, or an electronic signature."
    )
    document: str = Field(
        min_length=1, max_length=200, description="Reference of the consent form / record."
    )


class PhotoError(ValueError):
    """A photo that cannot be enrolled (``index`` and ``name`` say which)."""

    def __init__(self, index: int, name: str, reason: str, faces: int | None = None) -> None:
        super().__init__(f"photo {index + 1} ({name!r}): {reason}")
        self.index, self.name, self.reason, self.faces = index, name, reason, faces


@lru_cache(maxsize=2)
def _models(models_dir: Path, threads: int, score: float) -> FaceModels:
    from edge.faces import FaceModels

    return FaceModels(models_dir, threads=threads, score_threshold=score)


def face_models(settings: Settings) -> FaceModels:
    """The face models of this process (loaded once, sha256-verified); ``ModelError`` names
    ``smartsite models fetch`` when they are missing."""
    return _models(settings.models_path, settings.ort_threads, settings.face_detect_score)


def embed_photos(models: FaceModels, photos: list[tuple[str, bytes]]) -> npt.NDArray[np.float32]:
    """One embedding per photo; each photo must hold exactly one face."""
    import cv2
    import numpy as np

    rows = []
    for i, (name, data) in enumerate(photos):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise PhotoError(i, name, "not a readable image (JPEG, PNG, WebP)")
        faces = models.detect(image)
        if len(faces) != 1:
            what = "no face" if not faces else f"{len(faces)} faces"
            raise PhotoError(i, name, f"{what} found; it must show exactly one", len(faces))
        rows.append(models.embed(image, faces[0]))
    return np.stack(rows).astype("<f4")


def _encrypt(key: bytes, embeddings: npt.NDArray[np.float32]) -> bytes:
    return fernet(key, _PURPOSE).encrypt(embeddings.astype("<f4").tobytes())


def _decrypt(key: bytes, token: bytes, count: int) -> npt.NDArray[np.float32]:
    import numpy as np

    return np.frombuffer(fernet(key, _PURPOSE).decrypt(token), "<f4").reshape(count, -1)


def enrol(
    conn: psycopg.Connection,
    key: bytes,
    person_id: str,
    embeddings: npt.NDArray[np.float32],
    model_sha256: str,
    consent: Consent,
    recorded_by: str,
) -> None:
    """Store (or replace) the person's enrolment with its consent, and log who did it."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO face_enrolments (person_id, embeddings_encrypted, model_sha256,"
            " photo_count, consent_given_by, consent_given_at, consent_method, consent_document,"
            " recorded_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (person_id) DO UPDATE SET"
            " embeddings_encrypted = EXCLUDED.embeddings_encrypted,"
            " model_sha256 = EXCLUDED.model_sha256, photo_count = EXCLUDED.photo_count,"
            " consent_given_by = EXCLUDED.consent_given_by,"
            " consent_given_at = EXCLUDED.consent_given_at,"
            " consent_method = EXCLUDED.consent_method,"
            " consent_document = EXCLUDED.consent_document,"
            " recorded_by = EXCLUDED.recorded_by, enrolled_at = now()",
            (
                person_id,
                _encrypt(key, embeddings),
                model_sha256,
                len(embeddings),
                consent.given_by,
                consent.given_at,
                consent.method,
                consent.document,
                recorded_by,
            ),
        )
        conn.execute(
            "INSERT INTO face_enrolment_log (person_id, action, actor) VALUES (%s, 'enrolled', %s)",
            (person_id, recorded_by),
        )


def remove(conn: psycopg.Connection, person_id: str, actor: str) -> bool:
    """Delete the person's enrolment (the embeddings are gone); False: there was none."""
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM face_enrolments WHERE person_id = %s RETURNING person_id", (person_id,)
        ).fetchone()
        if row is None:
            return False
        conn.execute(
            "INSERT INTO face_enrolment_log (person_id, action, actor) VALUES (%s, 'removed', %s)",
            (person_id, actor),
        )
    return True


def enrolment(conn: psycopg.Connection, person_id: str) -> dict[str, object] | None:
    """What may be shown of an enrolment: when, how many photos, the consent. No embeddings."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT enrolled_at, photo_count, model_sha256, consent_given_by, consent_given_at,"
            " consent_method, consent_document, recorded_by FROM face_enrolments"
            " WHERE person_id = %s",
            (person_id,),
        ).fetchone()


# --- the gallery for a project's edge devices ----------------------------------------------------


@dataclass(frozen=True)
class GalleryExport:
    """A project's enrolled faces as its gateways get them (``FaceGallery``)."""

    project_id: str
    version: str  # sha256 of the content: edge devices reload only when it changes
    model_sha256: str  # the recognizer the embeddings were made with
    workers: dict[str, list[float]]  # worker id -> mean template, L2-normalised
    roles: dict[str, str]  # worker id -> trade (zones' allowed_roles), when the registry has one


def project_gallery(
    conn: psycopg.Connection, key: bytes, project_id: str, model_sha256: str
) -> GalleryExport:
    """The enrolled faces of the workers currently on ``project_id`` (active, not left the
    project), one mean template per worker (the strategy ``edge.faces.Gallery`` defaults to,
    and the least biometric data to ship). Enrolments made with another recognizer than
    ``model_sha256`` are left out (their embeddings would not compare). The publish on the
    config topic belongs to the edge agent's issue; this is what it sends."""
    from edge.faces import normalise

    rows = conn.execute(
        "SELECT f.person_id, f.embeddings_encrypted, f.photo_count, pe.trade"
        " FROM face_enrolments f"
        " JOIN persons pe ON pe.id = f.person_id AND pe.status = 'active'"
        " JOIN project_workers pw ON pw.person_id = f.person_id AND pw.project_id = %s"
        " AND (pw.left_on IS NULL OR pw.left_on >= current_date)"
        " WHERE f.model_sha256 = %s ORDER BY f.person_id",
        (project_id, model_sha256),
    ).fetchall()
    workers = {
        pid: [round(float(x), 6) for x in normalise(_decrypt(key, bytes(tok), n).mean(axis=0))]
        for pid, tok, n, _ in rows
    }
    roles = {pid: trade for pid, _, _, trade in rows if trade}
    canonical = json.dumps(
        {"model": model_sha256, "workers": workers, "roles": roles}, sort_keys=True
    )
    version = hashlib.sha256(canonical.encode()).hexdigest()
    return GalleryExport(project_id, version, model_sha256, workers, roles)
