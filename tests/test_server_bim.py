"""The BIM endpoints on the real database with a real IFC file (the smallest of
../shared/datasets/ifc): upload, the tree, per-storey GLB with ETag, placements, refusals."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from api_helpers import login, project, user
from fastapi.testclient import TestClient

from bim import placement
from bim.models import DevicePlacementIn
from server.routes import bim as bim_routes


def _small_ifc() -> Path:
    for d in (
        Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ifc",
        Path("/work/shared/datasets/ifc"),
    ):
        found = sorted(d.rglob("*.ifc"), key=lambda p: p.stat().st_size) if d.is_dir() else []
        if found:
            return found[0]
    pytest.skip("../shared/datasets/ifc (the real IFC models) is not on this machine")


IFC = "application/octet-stream"


@pytest.fixture
def site(db: psycopg.Connection) -> psycopg.Connection:
    project(db, "P1")
    project(db, "P2")
    user(db, "admin1", "admin")
    user(db, "officer1", "officer", projects=["P1"])
    user(db, "officer2", "officer", projects=["P2"])
    user(db, "reg", "regulator")
    return db


def upload(client: TestClient, headers: dict[str, str], pid: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/projects/{pid}/bim", files={"file": (name, data, IFC)}, headers=headers
    )


def test_upload_tree_glb_and_placements(client: TestClient, site: psycopg.Connection) -> None:
    src = _small_ifc()
    h = login(client, "officer1")
    assert client.get("/api/projects/P1/bim", headers=h).status_code == 404  # no model yet

    r = upload(client, h, "P1", src.name, src.read_bytes())
    assert r.status_code == 201, r.text
    assert r.json()["model"]["version"] == 1 and r.json()["model"]["file_name"] == src.name
    again = upload(client, h, "P1", src.name, src.read_bytes())
    assert again.status_code == 200 and again.json()["unchanged"] is True

    body = client.get("/api/projects/P1/bim", headers=h).json()
    assert body["model"]["version"] == 1
    storeys: list[dict] = []

    def walk(nodes: list[dict]) -> None:
        for n in nodes:
            if n["kind"] == "storey":
                storeys.append(n)
            walk(n["children"])

    walk(body["roots"])
    assert storeys and len(storeys) == body["model"]["counts"]["storeys"]

    manifest = client.get("/api/projects/P1/bim/manifest", headers=h).json()
    shown = [s for s in manifest["storeys"] if s["products"]]
    assert shown
    storey = min(shown, key=lambda s: len(s["products"]))["id"]
    glb = client.get(f"/api/projects/P1/bim/storeys/{storey}.glb", headers=h)
    assert glb.status_code == 200
    assert glb.headers["content-type"] == "model/gltf-binary"
    assert glb.content[:4] == b"glTF"
    etag = glb.headers["etag"]
    cached = client.get(
        f"/api/projects/P1/bim/storeys/{storey}.glb", headers={**h, "If-None-Match": etag}
    )
    assert cached.status_code == 304 and cached.headers["etag"] == etag
    missing = client.get("/api/projects/P1/bim/storeys/nope.glb", headers=h)
    assert missing.status_code == 404 and "no storey" in missing.json()["error"]["message"]

    site.execute("INSERT INTO devices (id, project_id, kind) VALUES ('cam-1', 'P1', 'camera')")
    placement.place_device(
        site,
        DevicePlacementIn(project_id="P1", device_id="cam-1", target_id=storeys[0]["global_id"]),
    )
    placed = client.get("/api/projects/P1/bim/placements", headers=h).json()
    assert [(p["kind"], p["device_id"], p["status"]) for p in placed] == [
        ("device", "cam-1", "resolved")
    ]


def test_other_projects_are_404_and_only_admins_and_officers_upload(
    client: TestClient, site: psycopg.Connection
) -> None:
    src = _small_ifc()
    assert (
        upload(client, login(client, "admin1"), "P2", src.name, src.read_bytes()).status_code == 201
    )
    h = login(client, "officer1")
    for path in ("", "/placements", "/manifest", "/storeys/outside.glb"):
        r = client.get(f"/api/projects/P2/bim{path}", headers=h)
        assert r.status_code == 404, path
        assert r.json()["error"]["message"] == "project not found"
    assert upload(client, h, "P2", src.name, src.read_bytes()).status_code == 404
    assert client.get("/api/projects/P2/bim", headers=login(client, "officer2")).status_code == 200
    r = upload(client, login(client, "reg"), "P1", src.name, src.read_bytes())
    assert r.status_code == 403 and "admin, officer" in r.json()["error"]["message"]


def test_upload_refuses_what_is_not_ifc_or_too_large_with_a_reason(
    client: TestClient, site: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = login(client, "officer1")
    r = upload(client, h, "P1", "photo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "not_ifc"
    assert "not an IFC file" in r.json()["error"]["message"]
    r = upload(client, h, "P1", "model.ifczip", b"PK\x03\x04" + b"\0" * 100)
    assert r.status_code == 415 and "unzip" in r.json()["error"]["message"]
    r = upload(client, h, "P1", "empty.ifc", b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    r = upload(client, h, "P1", "cut.ifc", _small_ifc().read_bytes()[:5000])
    assert r.status_code == 422 and "cut short" in r.json()["error"]["message"]

    monkeypatch.setattr(bim_routes, "IFC_MAX_BYTES", 4096)
    r = upload(client, h, "P1", "big.ifc", b"ISO-10303-21;\n" + b"x" * 8192)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert "larger than" in r.json()["error"]["message"]
    assert site.execute("SELECT count(*) FROM bim_models").fetchone() == (0,)
