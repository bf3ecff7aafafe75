"""The gateways' face galleries follow enrolment, on the real database and broker: migration
0017 announces every project whose gallery may have changed, and the hub's GalleryPublisher
(server/gallery_sync.py) retains the new gallery on each gateway's topic, so a removed or
departed worker leaves the gateways within seconds (biometric data kept no longer than its
purpose), not at the next `smartsite edge push-config`."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from conftest import wait_until

from smartsite.embedded import MosquittoBroker
from smartsite.protocol.messages import FaceGallery
from smartsite.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.skipif(
    MosquittoBroker.available() is None, reason="mosquitto is not installed"
)

FACES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faces"
OBAMA = "ageitgey_face_recognition/tests/test_images/obama.jpg"
OBAMA2 = "ageitgey_face_recognition/tests/test_images/obama2.jpg"
LUCIANO = "hongweijia_MAX-Facial-Recognizer/assets/Luciano.png"
PROJECT, OTHER = "P-GS", "P-GS2"
GW, GW_OTHER = "P-GS-gw", "P-GS2-gw"
SHA = "a" * 64  # a recogniser hash for enrolments written directly in SQL


def _id_number(serial: int) -> str:
    from smartsite.identifiers import id_check_digit

    first17 = f"11010519900101{serial:03d}"
    return first17 + id_check_digit(first17)


class GatewayView:
    """What one MQTT login receives under a topic filter (payload and retain flag)."""

    def __init__(self, endpoint: MqttEndpoint, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gv-{uuid.uuid4().hex[:6]}")
        c.username_pw_set(endpoint.username, endpoint.password)
        c.on_connect = lambda cl, *_: cl.subscribe(topic_filter, qos=1)
        c.on_subscribe = lambda *_: ready.set()
        c.on_message = lambda _c, _u, m: self._add(m.topic, m.payload, bool(m.retain))
        c.connect(endpoint.host, endpoint.port)
        c.loop_start()
        assert ready.wait(20)
        self.client = c

    def _add(self, topic: str, payload: bytes, retain: bool) -> None:
        with self.lock:
            self.messages.append((topic, payload, retain))

    def galleries(self) -> list[FaceGallery | None]:
        """Every gallery received, in order (None: the retained gallery was deleted)."""
        with self.lock:
            return [
                FaceGallery.model_validate_json(p) if p else None
                for t, p, _ in self.messages
                if t.endswith("/gallery")
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(endpoint: MqttEndpoint, topic_filter: str) -> list[tuple[str, bytes, bool]]:
    """What a fresh subscriber gets right after subscribing: the retained messages."""
    view = GatewayView(endpoint, topic_filter)
    time.sleep(1.0)
    view.close()
    return view.messages


@pytest.fixture
def site(tmp_path: Path, db: psycopg.Connection, settings: Settings) -> Iterator[dict[str, Any]]:
    """Two projects with a gateway each (broker credentials, ACL from the registry), two
    workers on the first; a broker that checks passwords and the ACL."""
    from smartsite.broker_auth import issue_credential, write_broker_files
    from smartsite.db.registry import (
        DeviceIn,
        PersonIn,
        ProjectIn,
        upsert_device,
        upsert_person,
        upsert_project,
    )
    from smartsite.secrets import secret_key

    settings = settings.model_copy(update={"hub_mqtt_password": uuid.uuid4().hex})
    key = secret_key(settings)
    for proj, gw in ((PROJECT, GW), (OTHER, GW_OTHER)):
        upsert_project(db, ProjectIn(id=proj, name=proj))
        upsert_device(db, DeviceIn(id=gw, project_id=proj, kind="gateway"))
    for n, pid in enumerate(("w1", "w2"), start=1):
        upsert_person(db, PersonIn(id=pid, name=f"Worker {n}", id_number=_id_number(n)), key)
        db.execute(
            "INSERT INTO project_workers (project_id, person_id) VALUES (%s, %s)", (PROJECT, pid)
        )
    passwords = {gw: issue_credential(db, gw) for gw in (GW, GW_OTHER)}
    files = write_broker_files(db, settings, tmp_path / "passwd", tmp_path / "acl")
    broker = MosquittoBroker(
        tmp_path / "mq", password_file=files.password_file, acl_file=files.acl_file
    ).start()
    try:
        yield {
            "settings": settings,
            "key": key,
            "hub": broker.endpoint.with_credentials(
                settings.hub_mqtt_username, settings.hub_mqtt_password
            ),
            "gw": broker.endpoint.with_credentials(GW, passwords[GW]),
            "gw_other": broker.endpoint.with_credentials(GW_OTHER, passwords[GW_OTHER]),
        }
    finally:
        broker.stop()


def test_changes_to_a_gallery_are_announced_per_project(
    db: psycopg.Connection, pg_url: str
) -> None:
    """Migrations 0017 and 0018: each change that can alter a project's gallery NOTIFYs its
    project on 'face_gallery', at commit; unrelated changes do not."""
    from smartsite.db.registry import (
        DeviceIn,
        PersonIn,
        ProjectIn,
        upsert_device,
        upsert_person,
        upsert_project,
    )

    for proj in ("PA", "PB", "PC"):
        upsert_project(db, ProjectIn(id=proj, name=proj))
    upsert_person(db, PersonIn(id="w1", name="W1", id_number=_id_number(1)), b"k" * 32)
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute("LISTEN face_gallery")

        def heard() -> list[str]:
            time.sleep(0.2)
            return sorted(n.payload for n in listener.notifies(timeout=0.3))

        for proj in ("PA", "PB"):
            db.execute(
                "INSERT INTO project_workers (project_id, person_id) VALUES (%s, 'w1')", (proj,)
            )
        assert heard() == ["PA", "PB"]
        enrol = (
            "INSERT INTO face_enrolments (person_id, embeddings_encrypted, model_sha256,"
            " photo_count, consent_given_by, consent_given_at, consent_method,"
            " consent_document, recorded_by) VALUES ('w1', '\\x00', %s, 1, 'x', now(),"
            " 'written', 'd', 'sql')"
        )
        db.execute(enrol, (SHA,))
        assert heard() == ["PA", "PB"]  # every project the person works on
        db.execute("UPDATE face_enrolments SET photo_count = 1")
        assert heard() == ["PA", "PB"]
        db.execute("UPDATE persons SET trade = 'rigger' WHERE id = 'w1'")  # 0018: roles
        assert heard() == ["PA", "PB"]
        db.execute("UPDATE persons SET trade = 'rigger', name = 'W 1' WHERE id = 'w1'")
        assert heard() == []
        db.execute("UPDATE project_workers SET left_on = current_date WHERE project_id = 'PB'")
        assert heard() == ["PB"]
        db.execute("UPDATE project_workers SET role = 'foreman' WHERE project_id = 'PB'")
        assert heard() == []  # not a gallery matter
        db.execute("UPDATE project_workers SET project_id = 'PC' WHERE project_id = 'PB'")
        assert heard() == ["PB", "PC"]
        db.execute("DELETE FROM project_workers WHERE project_id = 'PC'")
        assert heard() == ["PC"]
        # one notification per project and transaction, only once committed
        with db.transaction():
            db.execute("UPDATE face_enrolments SET photo_count = 1")
            db.execute("UPDATE face_enrolments SET photo_count = 1")
            assert heard() == []
        assert heard() == ["PA"]
        # the person leaves: 0015 deletes the enrolment, which announces the projects
        db.execute("UPDATE persons SET status = 'left' WHERE id = 'w1'")
        assert heard() == ["PA"]
        # gateways: registered, moved, deactivated; not re-upserted unchanged, not cameras
        upsert_device(db, DeviceIn(id="gw", project_id="PA", kind="gateway"))
        assert heard() == ["PA"]
        upsert_device(db, DeviceIn(id="gw", project_id="PA", kind="gateway"))
        upsert_device(db, DeviceIn(id="cam", project_id="PA", kind="camera"))
        db.execute("UPDATE devices SET last_seen = now(), last_seq = 5")
        assert heard() == []
        upsert_device(db, DeviceIn(id="gw", project_id="PB", kind="gateway"))
        assert heard() == ["PA", "PB"]
        db.execute("UPDATE devices SET active = false WHERE id = 'gw'")
        assert heard() == ["PB"]


def test_gateway_galleries_follow_enrolment_removal_and_departure(
    db: psycopg.Connection,
    pg_url: str,
    site: dict[str, Any],
    face_models_dir: Path,
) -> None:
    from edge.faces import FaceModels
    from server.faces import Consent, embed_photos, enrol, remove
    from server.gallery_sync import GalleryPublisher

    settings: Settings = site["settings"]
    prefix = settings.topic_prefix
    faces = FaceModels(face_models_dir)
    consent = Consent(
        given_by="Worker", given_at="2026-03-01T09:30:00+08:00", method="written", document="CF"
    )
    embedded = {
        "w1": embed_photos(faces, [(n, (FACES / n).read_bytes()) for n in (OBAMA, OBAMA2)]),
        "w2": embed_photos(faces, [(LUCIANO, (FACES / LUCIANO).read_bytes())]),
    }

    def enrol_(pid: str) -> None:
        enrol(db, site["key"], pid, embedded[pid], faces.recognizer_sha256, consent, "test")

    publisher = GalleryPublisher(pg_url, site["hub"], settings, debounce_s=0.2).start()
    # the gateway's own view (its login, the ACL), and another project's gateway trying all
    gw = GatewayView(site["gw"], f"{prefix}/{PROJECT}/{GW}/gallery")
    other = GatewayView(site["gw_other"], f"{prefix}/+/+/gallery")
    try:
        # at start: every project's gallery, empty as nobody is enrolled yet
        wait_until(lambda: publisher.resyncs == 1, 20, "the first resync")
        wait_until(lambda: len(gw.galleries()) >= 1, 10, "the gateway's first gallery")

        def arrives(workers: list[str], what: str) -> FaceGallery:
            t0 = time.monotonic()

            def latest() -> bool:
                got = gw.galleries()
                return bool(got) and got[-1] is not None and sorted(got[-1].workers) == workers

            wait_until(latest, 5, f"a gallery with {workers} after {what}")
            g = gw.galleries()[-1]
            assert g is not None
            print(f"{what}: gallery {sorted(g.workers)} in {time.monotonic() - t0:.2f}s")
            # and it is the retained one: what the gateway gets when it (re)connects
            kept = retained(site["gw"], f"{prefix}/{PROJECT}/{GW}/gallery")
            assert len(kept) == 1 and kept[0][2], kept
            assert FaceGallery.model_validate_json(kept[0][1]).version == g.version
            return g

        assert gw.galleries()[-1] is not None and gw.galleries()[-1].workers == {}  # type: ignore[union-attr]
        enrol_("w1")
        g1 = arrives(["w1"], "enrolment")
        assert (g1.device, g1.project, g1.model_sha256) == (GW, PROJECT, faces.recognizer_sha256)
        assert len(g1.workers["w1"]) == 128

        assert remove(db, "w1", "test")
        arrives([], "removal")

        enrol_("w1")
        enrol_("w2")
        arrives(["w1", "w2"], "two enrolments")

        # w2 leaves the project (not the company): out of this project's gallery
        db.execute("UPDATE project_workers SET left_on = current_date - 1 WHERE person_id = 'w2'")
        arrives(["w1"], "leaving the project")

        # w1 leaves (status 'left'): 0015 deletes the enrolment, the gallery follows
        n = len(gw.galleries())
        db.execute("UPDATE persons SET status = 'left' WHERE id = 'w1'")
        arrives([], "the person leaving")
        assert len(gw.galleries()) == n + 1  # one republish, not one per trigger

        # a gateway deactivated: its retained gallery is deleted
        db.execute("UPDATE devices SET active = false WHERE id = %s", (GW,))
        wait_until(lambda: gw.galleries()[-1] is None, 5, "the gallery deleted")
        assert retained(site["hub"], f"{prefix}/{PROJECT}/{GW}/gallery") == []

        # the other project's gateway only ever saw its own (empty) gallery
        seen = other.galleries()
        assert seen and all(g is not None and g.device == GW_OTHER for g in seen)
        assert all(g is not None and g.workers == {} for g in seen)
    finally:
        gw.close()
        other.close()
        publisher.stop()


def test_a_missed_change_is_repaired_by_the_periodic_resync(
    db: psycopg.Connection, pg_url: str, site: dict[str, Any]
) -> None:
    """The retained gallery lost (here: deleted behind the hub's back, as a notification
    missed while the hub was down would leave it stale) comes back at the next resync."""
    from server.edge_config import publish_galleries
    from server.gallery_sync import GalleryPublisher

    settings: Settings = site["settings"]
    prefix = settings.topic_prefix
    publisher = GalleryPublisher(pg_url, site["hub"], settings, resync_s=2.0).start()
    gw = GatewayView(site["gw"], f"{prefix}/{PROJECT}/{GW}/gallery")
    try:
        wait_until(lambda: bool(gw.galleries()), 20, "the first gallery")
        n = len(gw.galleries())
        publish_galleries(site["hub"], prefix, [], clear=[(PROJECT, GW)])

        def restored() -> bool:
            after = gw.galleries()[n:]
            return None in after and after[-1] is not None

        wait_until(restored, 10, "the gallery deleted, then back by the resync")
        assert publisher.resyncs >= 2
        kept = retained(site["gw"], f"{prefix}/{PROJECT}/{GW}/gallery")
        assert len(kept) == 1 and FaceGallery.model_validate_json(kept[0][1]).device == GW
    finally:
        gw.close()
        publisher.stop()
