"""Hub → edge: the retained ``config`` and ``gallery`` of a project's site gateways.

``pushes`` builds, per active gateway of a project, the protocol :class:`Config` (zones per
gateway and thresholds from an operator's file, the gallery version, the face recogniser
version) and the :class:`FaceGallery` (the enrolled faces of the workers currently on the
project, from :func:`server.faces.project_gallery`); ``publish`` puts both on the gateway's
retained topics with QoS 1 and waits for every PUBACK. The agent applies them without a
restart (``edge/agent.py``). Between pushes the hub keeps the galleries in step with
enrolment on its own (``galleries`` + ``publish_galleries``, run by
``server/gallery_sync.py``): a removed or departed worker leaves the gateways' galleries
within seconds.

Biometric data goes only where it belongs: a gallery holds the templates of the project's
own workers and is published only under gateways registered to that project; the broker ACL
(``smartsite/broker_auth.py``) lets each gateway read only its own ``gallery`` topic, and
ingest ignores it. The gallery goes before the config that names its version.

The settings file (YAML or JSON)::

    thresholds:                 # every gateway of the project
      crowding: {alarm: 5}      # people per zone
      loitering: {warning: 30}  # seconds
    zones:                      # per gateway id: the zones of its cameras
      P1-gw:
        - {id: pit, name: Foundation pit, type: danger, camera: gate-1,
           polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]], required_ppe: [hard_hat]}
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smartsite.protocol import limits
from smartsite.protocol.messages import Config, FaceGallery, Threshold, Zone, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import MqttEndpoint


class EdgeConfigError(ValueError):
    """The push cannot be built or sent as asked."""


class EdgeSettings(BaseModel):
    """What an operator sets for a project's gateways (the settings file)."""

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="Per-metric or per-rule thresholds, every gateway."
    )
    zones: dict[str, list[Zone]] = Field(
        default_factory=dict, description="Gateway id → the zones of its cameras."
    )


def load_settings(path: Path) -> EdgeSettings:
    """Read a settings file (YAML or JSON); one :class:`EdgeConfigError` saying what is wrong."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return EdgeSettings.model_validate(data)
    except OSError as e:
        raise EdgeConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise EdgeConfigError(f"{path}: not valid YAML/JSON: {e}") from None
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise EdgeConfigError(f"{path}: {loc}: {err['msg']}") from None


@dataclass(frozen=True)
class Push:
    """What one gateway receives."""

    project_id: str
    device: str
    config: Config
    gallery: FaceGallery


def project_gateways(
    conn: psycopg.Connection, project_id: str, device: str | None = None
) -> list[str]:
    """The active gateways of ``project_id`` (only ``device``, which must be one of them)."""
    rows = conn.execute(
        "SELECT id FROM devices WHERE project_id = %s AND kind = 'gateway' AND active"
        " AND (%s::text IS NULL OR id = %s) ORDER BY id",
        (project_id, device, device),
    ).fetchall()
    if device is not None and not rows:
        raise EdgeConfigError(f"{device!r} is not an active gateway of project {project_id!r}")
    if not rows:
        raise EdgeConfigError(f"project {project_id!r} has no active gateway")
    return [str(r[0]) for r in rows]


def pushes(
    conn: psycopg.Connection,
    key: bytes,
    project_id: str,
    *,
    device: str | None = None,
    settings: EdgeSettings | None = None,
) -> list[Push]:
    """The config and gallery of each active gateway of ``project_id`` (or just ``device``)."""
    from edge.faces import RECOGNIZER
    from models.registry import spec

    settings = settings or EdgeSettings()
    gateways = project_gateways(conn, project_id, device)
    unknown = sorted(set(settings.zones) - set(project_gateways(conn, project_id)))
    if unknown:
        raise EdgeConfigError(f"zones for {unknown}: not active gateways of project {project_id!r}")
    model = spec(RECOGNIZER).sha256
    out = []
    for gallery in _galleries(conn, key, project_id, gateways, model):
        gw = gallery.device
        config = Config(
            device=gw,
            zones=settings.zones.get(gw, []),
            thresholds=settings.thresholds,
            gallery_version=gallery.version,
            models={RECOGNIZER: model},
        )
        if len(encode(config)) > limits.MAX_JSON_BYTES:
            raise EdgeConfigError(f"the config of {gw!r} is over {limits.MAX_JSON_BYTES} bytes")
        out.append(Push(project_id, gw, config, gallery))
    return out


def galleries(conn: psycopg.Connection, key: bytes, project_id: str) -> list[FaceGallery]:
    """The gallery of each active gateway of ``project_id`` alone (no config): what the hub's
    gallery sync (``server/gallery_sync.py``) republishes when enrolments change; [] when the
    project has no active gateway."""
    from edge.faces import RECOGNIZER
    from models.registry import spec

    try:
        gateways = project_gateways(conn, project_id)
    except EdgeConfigError:
        return []
    return _galleries(conn, key, project_id, gateways, spec(RECOGNIZER).sha256)


def _galleries(
    conn: psycopg.Connection, key: bytes, project_id: str, gateways: list[str], model: str
) -> list[FaceGallery]:
    from server.faces import project_gallery

    export = project_gallery(conn, key, project_id, model)
    out = []
    for gw in gateways:
        gallery = FaceGallery(
            device=gw,
            project=project_id,
            version=export.version,
            model_sha256=export.model_sha256,
            workers=export.workers,
            roles=export.roles,
        )
        size = len(encode(gallery))
        if size > limits.MAX_GALLERY_BYTES:
            raise EdgeConfigError(
                f"the gallery of project {project_id!r} is {size} bytes "
                f"({len(export.workers)} workers), limit {limits.MAX_GALLERY_BYTES}"
            )
        out.append(gallery)
    return out


def publish(endpoint: MqttEndpoint, prefix: str, items: list[Push], timeout: float = 30) -> None:
    """Retain each push on its gateway's ``gallery`` and ``config`` topics (QoS 1, in that
    order), waiting for every PUBACK; an error names what did not go out."""
    _retain(
        endpoint,
        prefix,
        [
            (p.project_id, p.device, kind, msg)
            for p in items
            for kind, msg in ((Kind.GALLERY, p.gallery), (Kind.CONFIG, p.config))
        ],
        timeout,
    )


def publish_galleries(
    endpoint: MqttEndpoint,
    prefix: str,
    items: list[FaceGallery],
    timeout: float = 30,
    *,
    clear: Sequence[tuple[str, str]] = (),
) -> None:
    """Retain each gallery on its gateway's ``gallery`` topic (QoS 1), waiting for every
    PUBACK; the retained config (zones, thresholds) is left as it is. ``clear``: (project,
    gateway) whose retained gallery is deleted (an empty retained message: the agent
    unloads it), e.g. a gateway deactivated or moved to another project."""
    _retain(
        endpoint,
        prefix,
        [(p, d, Kind.GALLERY, None) for p, d in clear]
        + [(g.project, g.device, Kind.GALLERY, g) for g in items],
        timeout,
    )


def _retain(
    endpoint: MqttEndpoint,
    prefix: str,
    messages: list[tuple[str, str, Kind, Config | FaceGallery | None]],
    timeout: float,
) -> None:
    """Publish ``(project, device, kind, message)`` retained with QoS 1, in order, as the hub
    (the credentials of ``endpoint``; None: an empty payload, which deletes the retained
    message); wait for every PUBACK."""
    from smartsite.mqtt import connect_kwargs, make_client

    client = make_client(
        endpoint, f"smartsite-edge-config-{uuid.uuid4().hex[:8]}", persistent=False
    )
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object = None) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(endpoint.host, endpoint.port, **connect_kwargs(endpoint, persistent=False))
    except OSError as e:
        where = f"{endpoint.host}:{endpoint.port}"
        raise EdgeConfigError(f"cannot reach the broker {where}: {e}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            raise EdgeConfigError(f"the broker did not accept the hub: {refused or 'timeout'}")
        infos = []
        for project_id, device, kind, msg in messages:
            topic = build(prefix, project_id, device, kind)
            payload = encode(msg) if msg is not None else b""
            infos.append((topic, client.publish(topic, payload, qos=1, retain=True)))
        for topic, info in infos:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise EdgeConfigError(f"no PUBACK for {topic} within {timeout}s")
    finally:
        client.disconnect()
        client.loop_stop()
