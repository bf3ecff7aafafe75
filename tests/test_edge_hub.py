"""The edge agent and the hub as one system, on real services: ``smartsite edge run`` with the
detection pipeline on a demo video -> the broker -> the real ingest worker -> PostgreSQL; and
``smartsite edge push-config`` (zones, thresholds, the enrolled-face gallery from the hub's
database) -> the retained topics -> a running agent that recognises the enrolled worker
(attendance) and calls anyone else unknown."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import api_helpers
import cv2
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from conftest import count, wait_until
from typer.testing import CliRunner

from edge.agent import Agent
from edge.config import load_config
from edge.demo_video import _fit, select_photos, write_video
from edge.detector import Detections
from edge.faces import DEFAULT_THRESHOLD, FaceModels
from edge.pipeline import CameraPipeline
from edge.simulator import gateway_id, register_site
from ingest.writer import missing_sequences
from models.registry import committed_path
from smartsite.broker_auth import acl_text
from smartsite.embedded import MosquittoBroker
from smartsite.protocol.messages import FaceGallery
from smartsite.settings import MqttEndpoint, Settings, get_settings

pytestmark = pytest.mark.skipif(
    MosquittoBroker.available() is None, reason="mosquitto is not installed"
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = committed_path("ppe_detector")
FACES = ROOT.parent / "shared" / "datasets" / "faces"
OBAMA = "ageitgey_face_recognition/tests/test_images/obama.jpg"
OBAMA2 = "ageitgey_face_recognition/tests/test_images/obama2.jpg"
OBAMA3 = "ageitgey_face_recognition/tests/test_images/obama3.jpg"  # not enrolled: the probe
LUCIANO = "hongweijia_MAX-Facial-Recognizer/assets/Luciano.png"  # never enrolled
SMARTSITE = Path(sys.executable).parent / "smartsite"
PROJECT = "P-EDGEHUB"
CAMERA = f"{PROJECT}-cam1"  # a registry device behind the gateway (its health readings)


def register(pg_url: str) -> str:
    """The project, its gateway and its camera in the registry; the gateway id."""
    from smartsite.db import connect
    from smartsite.db.registry import DeviceIn, upsert_device

    register_site(pg_url, PROJECT, 0)
    gw = gateway_id(PROJECT)
    with connect(pg_url, autocommit=True) as conn:
        upsert_device(conn, DeviceIn(id=CAMERA, project_id=PROJECT, kind="camera", gateway_id=gw))
    return gw


class Subscriber:
    """Everything published under one device's topics."""

    def __init__(self, endpoint: MqttEndpoint, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:6]}")
        if endpoint.username:
            c.username_pw_set(endpoint.username, endpoint.password)
        c.on_connect = lambda cl, *_: cl.subscribe(topic_filter, qos=1)
        c.on_subscribe = lambda *_: ready.set()
        c.on_message = lambda _c, _u, m: self._add(m.topic, m.payload)
        c.connect(endpoint.host, endpoint.port)
        c.loop_start()
        assert ready.wait(20)
        self.client = c

    def _add(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.messages.append((topic, payload))

    def json(self, kind: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.endswith("/" + kind) and p]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def cli_env(pg_url: str, broker: MosquittoBroker, settings: Settings) -> Iterator[dict[str, str]]:
    """The environment a hub command of this test runs in (its database, broker, prefix)."""
    env = {
        "DATABASE_URL": pg_url,
        "MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
        "SMARTSITE_HOME": str(settings.home),
        "SMARTSITE_TOPIC_PREFIX": settings.topic_prefix,
    }
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


# --- smartsite edge run -> ingest -> database ------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not MODEL.exists(), reason=f"no committed PPE detector at {MODEL}")
def test_edge_run_with_detection_lands_events_alerts_and_evidence_in_the_db(
    tmp_path: Path, db: psycopg.Connection, pg_url: str, broker, settings, start_worker
) -> None:
    gw = register(pg_url)
    start_worker(pg_url, broker.endpoint)
    write_video(select_photos(limit=4), tmp_path / "demo.avi", fps=10, hold=20, gap=25)
    # The whole frame is a danger zone: everyone the detector tracks makes one intrusion
    # alert (the no-hard-hat acceptance is tests/test_edge_pipeline.py's; this is the plumbing).
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""
gateway:
  device: {gw}
  project: {PROJECT}
  topic_prefix: {settings.topic_prefix}
  status_interval_s: 1
  mqtt: {{url_env: EDGE_MQTT_URL}}
models: {{detector: {MODEL}}}
cameras:
  - id: {CAMERA}
    source: demo.avi
    fps: 10
    zones:
      - {{id: site, type: danger, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}
    rules: {{k: 2, n: 5, min_score: 0.25, ppe_score: 0.25,
             enabled: [no_hard_hat, zone_intrusion]}}
"""
    )
    env = {**os.environ, "EDGE_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}"}
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(SMARTSITE), "edge", "run", str(config)], env=env, stdout=log, stderr=log
        )
        try:
            ended = (
                "SELECT count(*) FROM device_status WHERE device_id = %s"
                " AND starts_with(detail->>%s, 'ended')"
            )
            wait_until(lambda: count(db, ended, gw, f"camera.{CAMERA}") > 0, 120, "the video's end")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    agent_log = (tmp_path / "agent.log").read_text()
    assert "Traceback" not in agent_log, agent_log[-3000:]
    with closing(sqlite3.connect(tmp_path / "outbox.sqlite")) as ob:
        assert ob.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        last_seq = ob.execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()[0]

    def all_stored() -> bool:
        got = count(
            db, "SELECT count(DISTINCT seq) FROM ingest_ledger WHERE device_id = %s AND seq > 0", gw
        )
        return got == last_seq

    wait_until(all_stored, 30, f"all {last_seq} messages of the agent in the ledger")
    assert missing_sequences(db, timedelta(hours=1)).get(gw, 0) == 0
    alerts = db.execute(
        "SELECT rule, evidence_id, event_id, message_id FROM edge_alerts WHERE device_id = %s",
        (gw,),
    ).fetchall()
    events = db.execute(
        "SELECT type, event_id, evidence_id FROM events WHERE device_id = %s", (gw,)
    ).fetchall()
    evidence = {
        r[0]: bytes(r[1])
        for r in db.execute("SELECT id, data FROM evidence WHERE device_id = %s", (gw,))
    }
    print(
        f"\n{last_seq} messages: {len(events)} events, {len(alerts)} alerts, "
        f"{len(evidence)} evidence JPEGs"
    )
    assert alerts and {r[0] for r in alerts} <= {"zone_intrusion", "no_hard_hat"}
    assert len({r[3] for r in alerts}) == len(alerts)  # each occurrence stored once
    ends = [e for e in events if e[0] == "end"]
    assert ends and {e[1] for e in ends} == {e[1] for e in events if e[0] == "new"}
    # every alert and every ended track has its photo at the hub, linked by evidence id
    for _rule, evidence_id, event_id, _mid in alerts:
        jpeg = evidence[evidence_id]
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[:2] == (480, 640)
        assert event_id in {e[1] for e in events}
    assert all(e[2] in evidence for e in ends)
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


# --- hub -> edge: config and the enrolled-face gallery ---------------------------------------


class FaceBodyDetector:
    """A stand-in person detector for portrait photos: one person box below each face YuNet
    finds (the face path is under test here, not the PPE model)."""

    names = ("person", "head", "hard_hat", "vest", "no_vest")

    def __init__(self, faces: FaceModels) -> None:
        self.faces = faces

    def detect(self, img: np.ndarray, conf: float | None = None) -> Detections:
        h, w = img.shape[:2]
        boxes = []
        for f in self.faces.detect(img):
            x, y, fw, fh = f.box
            boxes.append(
                [
                    max(0, x - 0.6 * fw),
                    max(0, y - 0.15 * fh),
                    min(w, x + 1.6 * fw),
                    min(h, y + 5 * fh),
                ]
            )
        n = len(boxes)
        return Detections(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.full(n, 0.9, np.float32),
            np.zeros(n, np.int64),
        )


def _id_number(serial: int) -> str:
    return api_helpers.id_number(serial, born="19900101")


def _frames(folder: Path, photos: list[str], hold: int = 16, gap: int = 25) -> None:
    """A folder video: each photo held, then blank frames (the person leaves)."""
    folder.mkdir()
    blank = np.zeros((480, 640, 3), np.uint8)
    n = 0
    for name in photos:
        img, *_ = _fit(cv2.imread(str(FACES / name)), (640, 480))
        for frame in [img] * hold + [blank] * gap:
            cv2.imwrite(str(folder / f"{n:05d}.jpg"), frame)
            n += 1


@pytest.mark.slow
def test_pushed_gallery_recognises_the_enrolled_worker_and_others_are_unknown(
    tmp_path: Path,
    db: psycopg.Connection,
    pg_url: str,
    broker,
    settings: Settings,
    start_worker,
    face_models_dir: Path,
    cli_env: dict[str, str],
) -> None:
    from server.faces import Consent, embed_photos, enrol
    from smartsite.db.registry import PersonIn, upsert_person
    from smartsite.secrets import secret_key

    gw = register(pg_url)
    start_worker(pg_url, broker.endpoint)
    key = secret_key(settings)
    faces = FaceModels(face_models_dir)
    # w1 is Barack Obama, enrolled on the hub from two photos with consent; w2 works on the
    # project but was never enrolled.
    for n, pid in enumerate(("w1", "w2"), start=1):
        upsert_person(db, PersonIn(id=pid, name=f"Worker {n}", id_number=_id_number(n)), key)
        db.execute(
            "INSERT INTO project_workers (project_id, person_id) VALUES (%s, %s)", (PROJECT, pid)
        )
    photos = [(n, (FACES / n).read_bytes()) for n in (OBAMA, OBAMA2)]
    consent = Consent(
        given_by="Worker 1", given_at="2026-03-01T09:30:00+08:00", method="written", document="CF-1"
    )
    enrol(db, key, "w1", embed_photos(faces, photos), faces.recognizer_sha256, consent, "test")
    db.execute("UPDATE persons SET trade = 'rigger' WHERE id = 'w1'")

    # The gateway: a looping folder video of a third photo of w1 and of a stranger.
    _frames(tmp_path / "frames", [OBAMA3, LUCIANO])
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""
gateway:
  device: {gw}
  project: {PROJECT}
  topic_prefix: {settings.topic_prefix}
  status_interval_s: 1
  mqtt: {{url: "mqtt://127.0.0.1:{broker.port}"}}
cameras:
  - id: {CAMERA}
    source: frames
    fps: 10
    loop: true
    rules: {{enabled: [unknown_person]}}
"""
    )
    cfg = load_config(config)

    def pipelines(cam, c):  # type: ignore[no-untyped-def]
        return CameraPipeline(cam, FaceBodyDetector(faces), device=c.gateway.device, faces=faces)

    sub = Subscriber(broker.endpoint, f"{settings.topic_prefix}/{PROJECT}/{gw}/#")
    agent = Agent(cfg, pipelines=pipelines, environ={}).start()
    settings_file = tmp_path / "edge-settings.yaml"
    settings_file.write_text(
        f"""
thresholds: {{crowding: {{alarm: 4}}}}
zones:
  {gw}:
    - {{id: gate-area, name: Gate, type: gate, camera: {CAMERA},
       polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}
"""
    )
    # a gateway of another project: never gets this project's gallery
    from smartsite.db.registry import DeviceIn, ProjectIn, upsert_device, upsert_project

    upsert_project(db, ProjectIn(id="P-OTHER", name="Another site"))
    upsert_device(db, DeviceIn(id="P-OTHER-gw", project_id="P-OTHER", kind="gateway"))
    try:
        wait_until(agent.connected.is_set, 20, "agent connected")
        from smartsite.cli import app

        res = CliRunner().invoke(
            app,
            ["edge", "push-config", "--project", PROJECT, "--device", "P-OTHER-gw"],
            env=cli_env,
        )
        assert res.exit_code == 1 and "not an active gateway of project" in res.output

        res = CliRunner().invoke(
            app,
            ["edge", "push-config", "--project", PROJECT, "--settings", str(settings_file)],
            env=cli_env,
        )
        assert res.exit_code == 0, res.output
        assert f"{gw}: config" in res.output and "(1 workers)" in res.output
        assert "P-OTHER-gw" not in res.output
        wait_until(agent.gallery_loaded.is_set, 20, "the gallery loaded")
        wait_until(agent.config_applied.is_set, 20, "the config applied")
        # the agent and this subscriber get the retained gallery independently
        wait_until(lambda: bool(sub.json("gallery")), 20, "the subscriber to see the gallery")
        pushed = FaceGallery.model_validate(sub.json("gallery")[-1])
        assert list(pushed.workers) == ["w1"] and agent.gallery_version == pushed.version
        # w1's trade goes with the gallery: a zone allowing riggers lets w1 in
        assert pushed.roles == {"w1": "rigger"}
        assert agent.pipelines[CAMERA].judge.roles == {"w1": "rigger"}
        assert agent.config.models.gallery_version == pushed.version
        assert [z.id for z in agent.config.camera(CAMERA).zones] == ["gate-area"]
        assert agent.config.camera(CAMERA).zones[0].crowd_limit == 4

        def seen() -> bool:
            unknown = [a for a in sub.json("alert") if a["rule"] == "unknown_person"]
            return bool(sub.json("attendance")) and bool(unknown)

        wait_until(seen, 60, "attendance of w1 and an unknown-person alert")
    finally:
        agent.stop()
        sub.close()
    attendance = sub.json("attendance")
    print(f"\nattendance: {[(a['worker_id'], round(a['similarity'], 3)) for a in attendance]}")
    assert {a["worker_id"] for a in attendance} == {"w1"}
    assert all(a["similarity"] >= DEFAULT_THRESHOLD for a in attendance)
    unknown = [a for a in sub.json("alert") if a["rule"] == "unknown_person"]
    print(f"unknown: {[a['detail'] for a in unknown]}")
    # each recognised visit and each stranger's visit comes with its evidence photo
    evidence_ids = {t.rsplit("/", 1)[1] for t, _ in sub.messages if "/evidence/" in t}
    assert {a["evidence_id"] for a in attendance + unknown} <= evidence_ids
    # the hub stored the attendance; ingest ignored the retained gallery and config
    wait_until(
        lambda: count(db, "SELECT count(*) FROM attendance WHERE worker_id = 'w1'") > 0,
        20,
        "attendance in the database",
    )
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    # only this gateway may read its gallery (biometric data)
    acl = acl_text(settings.topic_prefix, "hub")
    assert f"pattern read {settings.topic_prefix}/+/%u/gallery" in acl
    assert f"topic write {settings.topic_prefix}/+/+/gallery" in acl


@pytest.mark.slow
def test_a_gateway_reads_only_its_own_gallery_on_the_broker(
    tmp_path: Path, db: psycopg.Connection, settings: Settings
) -> None:
    """The broker ACL written from the registry: each gateway receives its own retained
    gallery and no other gateway's (biometric data)."""
    from models.registry import spec
    from server.edge_config import Push, publish
    from smartsite.broker_auth import issue_credential, write_broker_files
    from smartsite.db.registry import DeviceIn, ProjectIn, upsert_device, upsert_project
    from smartsite.protocol.messages import Config

    settings = settings.model_copy(update={"hub_mqtt_password": uuid.uuid4().hex})
    sites = {"gw-a": "P-A", "gw-b": "P-B"}
    for gw, proj in sites.items():
        upsert_project(db, ProjectIn(id=proj, name=proj))
        upsert_device(db, DeviceIn(id=gw, project_id=proj, kind="gateway"))
    passwords = {gw: issue_credential(db, gw) for gw in sites}
    files = write_broker_files(db, settings, tmp_path / "passwd", tmp_path / "acl")
    broker = MosquittoBroker(
        tmp_path / "mq", password_file=files.password_file, acl_file=files.acl_file
    ).start()
    prefix = settings.topic_prefix
    sha = spec("face_recognition_sface").sha256
    try:
        hub = broker.endpoint.with_credentials(
            settings.hub_mqtt_username, settings.hub_mqtt_password
        )
        publish(
            hub,
            prefix,
            [
                Push(
                    proj,
                    gw,
                    Config(device=gw),
                    FaceGallery(
                        device=gw,
                        project=proj,
                        version=f"{i}" * 64,
                        model_sha256=sha,
                        workers={f"w-{gw}": [0.1] * 128},
                    ),
                )
                for i, (gw, proj) in enumerate(sites.items())
            ],
        )
        for gw in sites:
            sub = Subscriber(
                broker.endpoint.with_credentials(gw, passwords[gw]), f"{prefix}/+/+/gallery"
            )
            time.sleep(1.0)  # retained messages come right after the subscription
            got = sub.json("gallery")
            sub.close()
            assert [g["device"] for g in got] == [gw], got
    finally:
        broker.stop()


def test_gallery_for_another_gateway_or_recogniser_is_refused(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path / "gw.yaml",
            "gateway: {device: gw-a, project: P1, mqtt: {url: 'mqtt://127.0.0.1:1'}}\n",
        )
    )
    agent = Agent(cfg, environ={})
    from models.registry import spec

    sha = spec("face_recognition_sface").sha256
    good = FaceGallery(
        device="gw-a", project="P1", version="1" * 64, model_sha256=sha, workers={"w1": [0.1] * 128}
    )
    agent.load_gallery(good)
    assert len(agent.gallery) == 1 and agent.status_detail()["gallery_loaded"].endswith(
        "(1 workers)"
    )
    for bad in (
        good.model_copy(update={"device": "gw-b"}),
        good.model_copy(update={"project": "P2"}),
        good.model_copy(update={"model_sha256": "0" * 64}),
    ):
        agent._on_gallery(bad.model_dump_json().encode())
        assert "gallery_error" in agent.status_detail()
        assert len(agent.gallery) == 1  # the loaded one stays
    agent._on_gallery(b"")  # the hub cleared the retained gallery: unloaded
    assert len(agent.gallery) == 0 and "gallery_error" not in agent.status_detail()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
