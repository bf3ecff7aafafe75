"""Faces: the model registry (fetch, verified loading, licences), YuNet + SFace on the real
photos of ../shared/datasets/faces (same person recognised across photos, others unknown; the
similarity matrix is printed), and enrolment on the hub API with a recorded consent."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import api_helpers
import cv2
import numpy as np
import psycopg
import pytest
from api_helpers import login, project, user
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edge.faces import DEFAULT_THRESHOLD, FaceModels, Gallery, align, match, normalise
from models import registry
from server.faces import project_gallery
from smartsite.db.registry import PersonIn, upsert_person
from smartsite.secrets import fernet, secret_key
from smartsite.settings import Settings, get_settings

FACES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faces"
SFACE_SHA = registry.MANIFEST["face_recognition_sface"].sha256


def identities() -> list[tuple[str, str]]:
    """(file, person id) of every photo listed that is present."""
    with (FACES / "IDENTITIES.csv").open(newline="") as f:
        rows = [(r["file"], r["person_id"]) for r in csv.DictReader(f)]
    return [(file, pid) for file, pid in rows if (FACES / file).is_file()]


@pytest.fixture(scope="module")
def face_models(face_models_dir: Path) -> FaceModels:
    return FaceModels(face_models_dir, threads=1)


@pytest.fixture(scope="module")
def embedded(face_models: FaceModels) -> dict[str, tuple[str, np.ndarray]]:
    """file -> (person id, embedding) for every photo of the data set (one face each)."""
    out = {}
    for file, pid in identities():
        image = cv2.imread(str(FACES / file))
        faces = face_models.detect(image)
        assert len(faces) == 1, f"{file}: {len(faces)} faces"
        out[file] = (pid, face_models.embed(image, faces[0]))
    return out


# --- registry ------------------------------------------------------------------------------------


def test_every_model_has_its_licence_text_and_notice_names_it() -> None:
    notice = (Path(__file__).resolve().parents[1] / "NOTICE").read_text()
    for spec in registry.MANIFEST.values():
        assert (registry.LICENSES_DIR / spec.licence_file).is_file()
        assert spec.file in notice and spec.sha256 in notice


def test_a_missing_or_altered_model_names_the_fetch_command(
    tmp_path: Path, face_models_dir: Path
) -> None:
    with pytest.raises(registry.ModelError, match=r"missing; run `smartsite models fetch`"):
        FaceModels(tmp_path)
    spec = registry.MANIFEST["face_detection_yunet"]
    altered = tmp_path / spec.file
    altered.write_bytes((face_models_dir / spec.file).read_bytes() + b"\0")
    with pytest.raises(registry.ModelError, match=r"is not the pinned .*smartsite models fetch"):
        registry.model_path("face_detection_yunet", tmp_path)


def test_fetch_is_idempotent_and_list_shows_verified_models(
    face_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    again = registry.fetch(face_models_dir)
    assert {f.action for f in again} == {"present"}
    monkeypatch.setenv("SMARTSITE_MODELS_DIR", str(face_models_dir))
    get_settings.cache_clear()
    try:
        from smartsite.cli import app

        res = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    assert res.output.count("verified") == len(registry.MANIFEST)


# --- recognition on real photos ------------------------------------------------------------------


def test_onnxruntime_sface_matches_opencvs_own_pipeline(
    face_models: FaceModels, face_models_dir: Path
) -> None:
    """Our alignment and onnxruntime inference give OpenCV FaceRecognizerSF's features."""
    assert cv2.getNumThreads() == 1
    reference = cv2.FaceRecognizerSF.create(str(face_models.recognizer_path), "")
    for file, _ in identities():
        image = cv2.imread(str(FACES / file))
        face = face_models.detect(image)[0]
        ours, theirs = align(image, face), reference.alignCrop(image, face.as_row())
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2
        cos = float(face_models.embed(image, face) @ normalise(reference.feature(theirs).ravel()))
        assert cos > 0.999, file


def test_no_face_in_a_blank_image(face_models: FaceModels) -> None:
    assert face_models.detect(np.full((480, 640, 3), 127, np.uint8)) == []


def test_enrolled_people_are_recognised_across_photos_and_others_are_unknown(
    embedded: dict[str, tuple[str, np.ndarray]],
) -> None:
    files = list(embedded)
    labels = [Path(f).stem + ":" + embedded[f][0] for f in files]
    m = np.stack([embedded[f][1] for f in files])
    sims = m @ m.T
    print("\ncosine similarity (SFace):")
    print(" " * 15 + " ".join(f"{lab[:13]:>13}" for lab in labels))
    for lab, row in zip(labels, sims, strict=True):
        print(f"{lab[:14]:>14} " + " ".join(f"{v:13.3f}" for v in row))
    same = [
        sims[i, j]
        for i in range(len(files))
        for j in range(i + 1, len(files))
        if embedded[files[i]][0] == embedded[files[j]][0]
    ]
    diff = [
        sims[i, j]
        for i in range(len(files))
        for j in range(i + 1, len(files))
        if embedded[files[i]][0] != embedded[files[j]][0]
    ]
    print(
        f"same person: min {min(same):.3f} (n={len(same)}); different people: max "
        f"{max(diff):.3f} (n={len(diff)}); threshold {DEFAULT_THRESHOLD}"
    )
    assert same and min(same) > DEFAULT_THRESHOLD > max(diff)

    # Enrol one photo of a person; their other photos are recognised, everyone else unknown.
    people = {pid for pid, _ in embedded.values()}
    repeated = [p for p in people if sum(1 for q, _ in embedded.values() if q == p) >= 2]
    assert repeated, "the data set needs a person with several photos"
    for enrolled_file, (pid, vector) in embedded.items():
        if pid not in repeated:
            continue
        gallery = Gallery({pid: [vector]})
        for file, (other_pid, probe) in embedded.items():
            if file == enrolled_file:
                continue
            result = match(probe, gallery)
            expected = pid if other_pid == pid else None
            assert result.worker_id == expected, (enrolled_file, file, result)

    # Everyone enrolled from one photo: each other photo goes to the right person.
    first: dict[str, np.ndarray] = {}
    for pid, vector in embedded.values():
        first.setdefault(pid, vector)
    everyone = Gallery({pid: [v] for pid, v in first.items()})
    for file, (pid, probe) in embedded.items():
        assert match(probe, everyone).worker_id == pid, file


def test_mean_template_separates_better_than_best_photo(
    embedded: dict[str, tuple[str, np.ndarray]],
) -> None:
    """Leave one photo out of a person's set, enrol the rest: the probe's score against the
    mean template vs the best single photo, and the best other person's score against each."""
    by_person: dict[str, list[str]] = {}
    for file, (pid, _) in embedded.items():
        by_person.setdefault(pid, []).append(file)
    margins: dict[str, list[float]] = {"mean": [], "max": []}
    for pid, files in by_person.items():
        if len(files) < 3:
            continue
        for probe in files:
            rest = [embedded[f][1] for f in files if f != probe]
            for strategy in ("mean", "max"):
                g = Gallery({pid: rest}, strategy=strategy)  # type: ignore[arg-type]
                same = g.similarities(embedded[probe][1])[pid]
                impostor = max(g.similarities(v)[pid] for f, (q, v) in embedded.items() if q != pid)
                margins[strategy].append(same - impostor)
                print(
                    f"{strategy}: probe {Path(probe).name} same {same:.3f} impostor {impostor:.3f}"
                )
    if not margins["mean"]:
        pytest.skip("no person with 3 photos")
    print({k: round(float(np.mean(v)), 3) for k, v in margins.items()})
    assert np.mean(margins["mean"]) >= np.mean(margins["max"])


# --- enrolment API -------------------------------------------------------------------------------


def _id_number(serial: int) -> str:
    return api_helpers.id_number(serial, born="19900101")


def _photo(file: str) -> bytes:
    return (FACES / file).read_bytes()


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _two_faces() -> bytes:
    a = cv2.imread(str(FACES / "ageitgey_face_recognition/tests/test_images/obama.jpg"))
    b = cv2.imread(str(FACES / "hongweijia_MAX-Facial-Recognizer/assets/Luciano.png"))
    b = cv2.resize(b, (a.shape[0] * b.shape[1] // b.shape[0], a.shape[0]))
    return _png(np.hstack([a, b]))


OBAMA = "ageitgey_face_recognition/tests/test_images/obama.jpg"
OBAMA2 = "ageitgey_face_recognition/tests/test_images/obama2.jpg"
CONSENT = {
    "consent_given_by": "Worker One",
    "consent_given_at": "2026-03-01T09:30:00+08:00",
    "consent_method": "written",
    "consent_document": "CF-2026-0042",
}


@pytest.fixture
def world(db: psycopg.Connection, settings: Settings) -> dict[str, Any]:
    key = secret_key(settings)
    project(db, "P1")
    project(db, "P2")
    for n, (pid, proj) in enumerate((("w1", "P1"), ("w2", "P2")), start=1):
        upsert_person(db, PersonIn(id=pid, name=f"Worker {n}", id_number=_id_number(n)), key)
        db.execute(
            "INSERT INTO project_workers (project_id, person_id) VALUES (%s, %s)", (proj, pid)
        )
    user(db, "admin1", "admin")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "regulator1", "regulator")
    return {"key": key}


@pytest.fixture
def face_client(
    pg_url: str, settings: Settings, db: psycopg.Connection, face_models_dir: Path
) -> Iterator[TestClient]:
    from server.app import create_app

    app = create_app(settings.model_copy(update={"models_dir": face_models_dir}), pg_url)
    with TestClient(app) as c:
        yield c


def _enrol(
    client: TestClient,
    headers: dict[str, str],
    pid: str,
    files: list[tuple[str, bytes]],
    **form: str,
) -> Any:
    return client.post(
        f"/api/workers/{pid}/face",
        headers=headers,
        data={**CONSENT, **form},
        files=[("photos", (name, data, "application/octet-stream")) for name, data in files],
    )


def _no_embedding(body: Any) -> None:
    """No list of numbers anywhere in a response, and no field naming embeddings."""
    if isinstance(body, dict):
        for k, v in body.items():
            assert "embedding" not in k.lower()
            _no_embedding(v)
    elif isinstance(body, list):
        assert not any(isinstance(x, float) for x in body)
        for x in body:
            _no_embedding(x)


def test_enrolment_requires_consent_and_never_returns_embeddings(
    face_client: TestClient, world: dict[str, Any], db: psycopg.Connection
) -> None:
    h = login(face_client, "officer1")
    photos = [("obama.jpg", _photo(OBAMA)), ("obama2.jpg", _photo(OBAMA2))]
    for field in CONSENT:
        r = face_client.post(
            "/api/workers/w1/face",
            headers=h,
            data={k: v for k, v in CONSENT.items() if k != field},
            files=[("photos", (n, d, "image/jpeg")) for n, d in photos],
        )
        assert r.status_code == 422, (field, r.text)
    assert _enrol(face_client, h, "w1", photos, consent_given_by="  ").status_code == 422
    assert db.execute("SELECT count(*) FROM face_enrolments").fetchone() == (0,)

    r = _enrol(face_client, h, "w1", photos)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["enrolled"] and body["photo_count"] == 2
    assert body["consent"] == {
        "given_by": "Worker One",
        "given_at": "2026-03-01T01:30:00Z",
        "method": "written",
        "document": "CF-2026-0042",
        "recorded_by": "user:officer1",
    }
    _no_embedding(body)
    for who in ("officer1", "admin1", "regulator1"):
        got = face_client.get("/api/workers/w1/face", headers=login(face_client, who))
        assert got.status_code == 200 and got.json()["enrolled"]
        _no_embedding(got.json())
    for path in ("/api/projects/P1/workers", "/openapi.json"):
        resp = face_client.get(path, headers=login(face_client, "admin1"))
        if resp.status_code == 200:
            _no_embedding(resp.json() if path != "/openapi.json" else {})
    # at rest: encrypted, 2 x 128 float32 behind the face key
    token, count = db.execute(
        "SELECT embeddings_encrypted, photo_count FROM face_enrolments WHERE person_id = 'w1'"
    ).fetchone()
    vectors = np.frombuffer(fernet(world["key"], "face").decrypt(bytes(token)), "<f4")
    assert vectors.shape == (count * 128,)
    assert vectors.tobytes()[:64] not in bytes(token)
    assert np.allclose(np.linalg.norm(vectors.reshape(count, 128), axis=1), 1, atol=1e-4)


def test_each_photo_needs_exactly_one_face(face_client: TestClient, world: dict[str, Any]) -> None:
    h = login(face_client, "admin1")
    blank = _png(np.full((200, 200, 3), 200, np.uint8))
    r = _enrol(face_client, h, "w1", [("ok.jpg", _photo(OBAMA)), ("wall.png", blank)])
    assert r.status_code == 422
    assert "wall.png" in r.json()["error"]["message"] and "no face" in r.json()["error"]["message"]
    assert r.json()["error"]["detail"] == {"photo": "wall.png", "index": 1, "faces": 0}
    r = _enrol(face_client, h, "w1", [("group.png", _two_faces())])
    assert r.status_code == 422 and "group.png" in r.json()["error"]["message"]
    assert r.json()["error"]["detail"]["faces"] == 2
    r = _enrol(face_client, h, "w1", [("junk.jpg", b"not an image")])
    assert r.status_code == 422 and "junk.jpg" in r.json()["error"]["message"]
    six = [(f"p{i}.jpg", _photo(OBAMA)) for i in range(6)]
    assert _enrol(face_client, h, "w1", six).status_code == 422
    assert face_client.get("/api/workers/w1/face", headers=h).json()["enrolled"] is False


def test_scope_delete_and_roles(
    face_client: TestClient, world: dict[str, Any], db: psycopg.Connection
) -> None:
    officer = login(face_client, "officer1")
    photos = [("obama.jpg", _photo(OBAMA))]
    # w2 works on P2 only: out of the officer's scope reads as absent
    assert _enrol(face_client, officer, "w2", photos).status_code == 404
    assert face_client.get("/api/workers/w2/face", headers=officer).status_code == 404
    assert face_client.delete("/api/workers/w2/face", headers=officer).status_code == 404
    assert face_client.get("/api/workers/nobody/face", headers=officer).status_code == 404
    # regulators may look, not enrol
    regulator = login(face_client, "regulator1")
    assert _enrol(face_client, regulator, "w1", photos).status_code == 403

    assert _enrol(face_client, officer, "w1", photos).status_code == 201
    assert face_client.delete("/api/workers/w1/face", headers=officer).status_code == 204
    assert face_client.get("/api/workers/w1/face", headers=officer).json() == {
        "person_id": "w1",
        "enrolled": False,
        "enrolled_at": None,
        "photo_count": None,
        "model_sha256": None,
        "consent": None,
    }
    assert db.execute("SELECT count(*) FROM face_enrolments").fetchone() == (0,)
    assert face_client.delete("/api/workers/w1/face", headers=officer).status_code == 404
    log = db.execute("SELECT action, actor FROM face_enrolment_log ORDER BY id").fetchall()
    assert log == [("enrolled", "user:officer1"), ("removed", "user:officer1")]


def test_a_worker_who_leaves_loses_the_enrolment(
    face_client: TestClient, world: dict[str, Any], db: psycopg.Connection
) -> None:
    h = login(face_client, "admin1")
    assert _enrol(face_client, h, "w1", [("obama.jpg", _photo(OBAMA))]).status_code == 201
    assert (
        _enrol(
            face_client,
            h,
            "w2",
            [("luciano.png", _photo("hongweijia_MAX-Facial-Recognizer/assets/Luciano.png"))],
        ).status_code
        == 201
    )
    db.execute("UPDATE persons SET status = 'left' WHERE id = 'w1'")
    rows = db.execute("SELECT person_id FROM face_enrolments").fetchall()
    assert rows == [("w2",)]
    assert face_client.get("/api/workers/w1/face", headers=h).json()["enrolled"] is False
    assert db.execute(
        "SELECT action FROM face_enrolment_log WHERE person_id = 'w1' ORDER BY id"
    ).fetchall() == [("enrolled",), ("removed_left",)]
    r = _enrol(face_client, h, "w1", [("obama.jpg", _photo(OBAMA))])
    assert r.status_code == 409
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO face_enrolments (person_id, embeddings_encrypted, model_sha256,"
            " photo_count, consent_given_by, consent_given_at, consent_method,"
            " consent_document, recorded_by) VALUES ('w1', '\\x00', %s, 1, 'x', now(),"
            " 'written', 'd', 'sql')",
            (SFACE_SHA,),
        )


def test_project_gallery_for_edge_devices(
    face_client: TestClient,
    world: dict[str, Any],
    db: psycopg.Connection,
    face_models: FaceModels,
) -> None:
    h = login(face_client, "admin1")
    empty = project_gallery(db, world["key"], "P1", SFACE_SHA)
    assert empty.workers == {}
    r = _enrol(face_client, h, "w1", [("obama.jpg", _photo(OBAMA)), ("o2.jpg", _photo(OBAMA2))])
    assert r.status_code == 201
    g1 = project_gallery(db, world["key"], "P1", SFACE_SHA)
    assert list(g1.workers) == ["w1"] and len(g1.workers["w1"]) == 128
    assert g1.version != empty.version
    assert project_gallery(db, world["key"], "P1", SFACE_SHA).version == g1.version
    assert project_gallery(db, world["key"], "P2", SFACE_SHA).workers == {}
    assert project_gallery(db, world["key"], "P1", "0" * 64).workers == {}
    assert g1.roles == {}  # w1 has no trade in the registry
    db.execute("UPDATE persons SET trade = 'rigger' WHERE id = 'w1'")
    g2 = project_gallery(db, world["key"], "P1", SFACE_SHA)
    assert g2.roles == {"w1": "rigger"} and g2.version != g1.version  # gateways reload
    # the edge side recognises the third photo from the exported template
    image = cv2.imread(str(FACES / "ageitgey_face_recognition/tests/test_images/obama3.jpg"))
    probe = face_models.embed(image, face_models.detect(image)[0])
    assert match(probe, Gallery(g1.workers)).worker_id == "w1"
    # a worker who leaves the project drops out of its gallery
    db.execute("UPDATE project_workers SET left_on = current_date - 1 WHERE person_id = 'w1'")
    assert project_gallery(db, world["key"], "P1", SFACE_SHA).workers == {}


def test_enrolment_without_models_names_the_fetch_command(
    pg_url: str, settings: Settings, db: psycopg.Connection, world: dict[str, Any], tmp_path: Path
) -> None:
    from server.app import create_app

    app = create_app(settings.model_copy(update={"models_dir": tmp_path / "none"}), pg_url)
    with TestClient(app) as c:
        r = _enrol(c, login(c, "admin1"), "w1", [("obama.jpg", _photo(OBAMA))])
    assert r.status_code == 503
    assert "smartsite models fetch" in r.json()["error"]["message"]
