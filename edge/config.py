"""One YAML file per site gateway: what the edge agent runs (Frigate's config is the model).

``load_config(path)`` reads and validates it (pydantic, ``extra="forbid"``, a description on
every field); anything wrong comes back as ONE :class:`ConfigError` that names the key, the
file and the line (the YAML is composed into nodes first, which keep their line numbers).
Secrets never sit in the file: the MQTT URL and credentials come from environment variables
the file names. The hub pushes zones, thresholds and the face-gallery version on the
gateway's retained ``config`` topic (``smartsite edge push-config``); :func:`apply_hub_config`
folds such a push into the running config (a new object; the agent hands it to each camera's
pipeline). The gallery itself comes on the retained ``gallery`` topic (see ``edge/agent.py``).

Example::

    gateway:
      device: P1-gw
      project: P1
      mqtt: {url_env: MQTT_URL, username_env: EDGE_MQTT_USER, password_env: EDGE_MQTT_PASSWORD}
      outbox: {path: outbox.sqlite, max_bytes: 268435456}
    models: {detector: ppe_detector, faces: true}
    cameras:
      - id: gate-1
        source: rtsp://10.0.0.21/stream1
        fps: 5
        zones:
          - id: pit
            type: danger
            polygon: [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]]
            required_ppe: [hard_hat, vest]
            loiter_s: 30
    sensors:
      - {type: simulator, id: sim, devices: 6, interval_s: 5}
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from smartsite.protocol.messages import Config as HubConfig
from smartsite.protocol.messages import ZoneType
from smartsite.protocol.topics import DEFAULT_PREFIX, SEGMENT_PATTERN
from smartsite.settings import MqttEndpoint

Ident = Annotated[str, Field(pattern=SEGMENT_PATTERN, description="Topic-safe identifier.")]
Unit01 = Annotated[float, Field(ge=0.0, le=1.0)]
EnvName = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Environment variable name.")
]
Metric = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Metric name, snake_case.")
]
URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class ConfigError(ValueError):
    """A config that cannot run: the message names the file, the line and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path | None:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base else None


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Relative paths in a config file are relative to the file's folder."""
    base = _base_dir(info)
    path = path.expanduser()
    return path if path.is_absolute() or base is None else base / path


# --- gateway ---------------------------------------------------------------------------------


class MqttConfig(_Model):
    """How the gateway reaches the broker. Secrets come from the environment only."""

    url: str | None = Field(
        None,
        description="Broker URL without credentials, e.g. mqtt://hub.example:1883 "
        "(mqtts:// for TLS, ?protocol=4 for MQTT 3.1.1). The variable named by url_env wins.",
    )
    url_env: EnvName = Field(
        "MQTT_URL", description="Environment variable holding the broker URL (may carry user:pass)."
    )
    username_env: EnvName | None = Field(
        None, description="Environment variable holding the gateway's broker user name."
    )
    password_env: EnvName | None = Field(
        None, description="Environment variable holding the gateway's broker password."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    max_inflight: int = Field(
        100, ge=1, le=10_000, description="Unacknowledged QoS 1 publishes in flight at most."
    )

    @field_validator("url")
    @classmethod
    def _no_inline_secret(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.password:
            raise ValueError(
                "must not contain a password: put the password in the environment "
                "(password_env) or the whole URL in the variable named by url_env"
            )
        MqttEndpoint.from_url(v)  # scheme, host and protocol check
        return v

    def endpoint(self, device: str, environ: dict[str, str] | None = None) -> MqttEndpoint:
        """The broker endpoint with credentials, read from the environment now."""
        env = os.environ if environ is None else environ
        url = env.get(self.url_env) or self.url
        if not url:
            raise ConfigError(
                f"gateway.mqtt: no broker URL: set the environment variable {self.url_env} "
                "or gateway.mqtt.url"
            )
        try:
            ep = MqttEndpoint.from_url(url)
        except ValueError as e:
            raise ConfigError(f"gateway.mqtt ({self.url_env}): {e}") from None
        user, password = ep.username, ep.password
        for attr, name in (("username_env", "user"), ("password_env", "password")):
            var = getattr(self, attr)
            if var is None:
                continue
            if var not in env:
                raise ConfigError(
                    f"gateway.mqtt.{attr}: the environment variable {var} (the broker {name}) "
                    "is not set"
                )
            if attr == "username_env":
                user = env[var]
            else:
                password = env[var]
        if user is None and password is not None:
            user = device  # devices log in as themselves (broker ACL pattern %u)
        return ep.with_credentials(user, password)


class OutboxConfig(_Model):
    """The disk outbox between the judge and MQTT."""

    path: Path = Field(
        Path("outbox.sqlite"),
        description="SQLite file of the outbox; relative to the config file's folder.",
        validate_default=True,
    )
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Size bound on disk; past it the oldest lowest-priority rows are dropped "
        "(telemetry and routine events before alerts and attendance).",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite synchronous mode: FULL survives power loss with every committed "
        "row; NORMAL (WAL) may lose the last commits on power loss, never corrupts.",
    )

    @field_validator("path")
    @classmethod
    def _relative_to_file(cls, v: Path, info: ValidationInfo) -> Path:
        return _resolve(v, info)


class ThreadsConfig(_Model):
    """Thread pools: OpenCV and onnxruntime each want every core; a 2-core gateway must share."""

    opencv: int = Field(1, ge=0, le=64, description="cv2.setNumThreads (0: OpenCV serial).")
    onnx_intra_op: int = Field(
        1, ge=1, le=64, description="onnxruntime intra-op threads per session."
    )
    onnx_inter_op: int = Field(
        1, ge=1, le=64, description="onnxruntime inter-op threads per session."
    )


class GatewayConfig(_Model):
    """The gateway itself: identity, broker, outbox, threads."""

    device: Ident = Field(description="Gateway device id (its broker user; in every topic).")
    project: Ident = Field(description="Project (site) id the gateway belongs to.")
    topic_prefix: str = Field(DEFAULT_PREFIX, description="Prefix of every protocol topic.")
    mqtt: MqttConfig = Field(
        default_factory=MqttConfig, description="Broker connection (secrets from environment)."
    )
    outbox: OutboxConfig = Field(
        default_factory=dict,  # type: ignore[arg-type]  # validated: the path gets resolved
        validate_default=True,
        description="Disk outbox.",
    )
    threads: ThreadsConfig = Field(default_factory=ThreadsConfig, description="Thread pools.")
    status_interval_s: float = Field(
        30.0, gt=0, description="How often gateway health (cameras, outbox depth) is published."
    )


# --- models ----------------------------------------------------------------------------------


class ModelsConfig(_Model):
    """Which models run; registry names resolve in the models directory, sha256-checked."""

    detector: str = Field(
        "ppe_detector",
        description="Person/PPE detector: a model-registry name or a path to an ONNX file.",
    )
    models_dir: Path | None = Field(
        None, description="Models directory; unset: SMARTSITE_MODELS_DIR or <home>/models."
    )
    faces: bool = Field(False, description="Run face detection and recognition (YuNet + SFace).")
    face_detector: str = Field(
        "face_detection_yunet", description="Registry name or ONNX path of the face detector."
    )
    face_recognizer: str = Field(
        "face_recognition_sface", description="Registry name or ONNX path of the recogniser."
    )
    gallery_version: str | None = Field(
        None, description="Enrolled-face gallery version in use (the hub pushes updates)."
    )
    versions: dict[str, str] = Field(
        default_factory=dict, description="Model name → sha256 the hub asks this gateway to run."
    )

    @field_validator("models_dir")
    @classmethod
    def _relative_to_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else _resolve(v, info)

    @field_validator("detector", "face_detector", "face_recognizer")
    @classmethod
    def _model_path(cls, v: str, info: ValidationInfo) -> str:
        if v.endswith(".onnx"):
            return str(_resolve(Path(v), info))
        return v


# --- cameras ---------------------------------------------------------------------------------


class ZoneConfig(_Model):
    """A zone on a camera's image as a normalised polygon (x, y in 0..1)."""

    id: Ident = Field(description="Zone id (unique per gateway).")
    name: str = Field("", max_length=100, description="Display name; the id when empty.")
    type: ZoneType = Field(description="danger, restricted or gate.")
    polygon: list[tuple[Unit01, Unit01]] = Field(
        min_length=3, description="Vertices [x, y], normalised to the image (0..1)."
    )
    required_ppe: list[Literal["hard_hat", "vest"]] = Field(
        default_factory=list, description="PPE required inside the zone."
    )
    allowed_roles: list[str] = Field(
        default_factory=list,
        description="Trades allowed to enter; empty: everyone (gate) or "
        "nobody (danger, restricted).",
    )
    crowd_limit: int | None = Field(
        None, ge=1, description="More people than this in the zone at once is crowding."
    )
    loiter_s: float | None = Field(
        None, gt=0, description="Staying longer than this many seconds is loitering."
    )


class RuleSettings(_Model):
    """How rules decide: agreement over frames, cooldowns, thresholds."""

    k: int = Field(3, ge=1, description="Frames of the n last of a track that must agree.")
    n: int = Field(5, ge=1, description="Window of frames per track for k-of-n agreement.")
    cooldown_s: float = Field(
        300.0, ge=0, description="After an alert, the same track and rule stay quiet this long."
    )
    min_score: Unit01 = Field(0.4, description="Detector confidence a box needs to count.")
    ppe_score: Unit01 = Field(
        0.35, description="Confidence a hard hat / vest box needs to count as worn."
    )
    face_threshold: float = Field(
        0.363, ge=-1, le=1, description="SFace cosine similarity from which a face is enrolled."
    )
    lying_aspect: float = Field(
        1.3, gt=0, description="Box width/height above which a person counts as lying."
    )
    enabled: list[str] = Field(
        default_factory=lambda: [
            "no_hard_hat",
            "no_vest",
            "zone_intrusion",
            "fall",
            "crowding",
            "unknown_person",
        ],
        description="Rules judged on this camera (protocol Rule names).",
    )

    @model_validator(mode="after")
    def _k_le_n(self) -> RuleSettings:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self


class SourceKind(StrEnum):
    FILE = "file"
    FOLDER = "folder"
    URL = "url"
    DEVICE = "device"


class CameraConfig(_Model):
    """One camera: where frames come from, how often, its zones and rule settings."""

    id: Ident = Field(description="Camera id (unique per gateway; in events and alerts).")
    source: str | int = Field(
        description="Video file, folder of images (read in name order), rtsp:// or http(s):// "
        "URL, or local device index (0, 1, …)."
    )
    enabled: bool = Field(True, description="Run this camera.")
    fps: float = Field(5.0, gt=0, le=60, description="Frames per second sampled from the source.")
    loop: bool = Field(
        False, description="Start a file or folder again at its end (demos); else it stops."
    )
    reconnect_initial_s: float = Field(
        1.0, gt=0, description="First wait before reopening a stream that dropped."
    )
    reconnect_max_s: float = Field(
        60.0, gt=0, description="Longest wait between reopen attempts (exponential backoff)."
    )
    open_timeout_s: float = Field(
        10.0, gt=0, description="How long opening a stream URL may take before it fails."
    )
    zones: list[ZoneConfig] = Field(default_factory=list, description="Zones on this camera.")
    rules: RuleSettings = Field(
        default_factory=RuleSettings, description="Rule settings for this camera."
    )

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | int, info: ValidationInfo) -> str | int:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("a device index is 0 or more")
            return v
        if v.strip().isdigit():
            return int(v)
        if URL_RE.match(v):
            scheme = v.split(":", 1)[0].lower()
            if scheme not in ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp", "file"):
                raise ValueError(f"unsupported URL scheme {scheme!r}")
            if urlsplit(v).password:
                raise ValueError(
                    "must not contain a password; use ${VAR} to take it from the environment"
                )
            return v
        return str(_resolve(Path(v), info))

    @property
    def source_kind(self) -> SourceKind:
        if isinstance(self.source, int):
            return SourceKind.DEVICE
        if URL_RE.match(self.source):
            return SourceKind.URL
        return SourceKind.FOLDER if Path(self.source).is_dir() else SourceKind.FILE

    def source_url(self, environ: dict[str, str] | None = None) -> str | int:
        """The source with ``${VAR}`` replaced from the environment (camera passwords)."""
        if not isinstance(self.source, str):
            return self.source
        env = os.environ if environ is None else environ

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise ConfigError(
                    f"cameras[{self.id}].source: environment variable {m.group(1)} is not set"
                )
            return env[m.group(1)]

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, self.source)

    @model_validator(mode="after")
    def _backoff(self) -> CameraConfig:
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError("reconnect_initial_s must not exceed reconnect_max_s")
        return self


# --- sensors ---------------------------------------------------------------------------------


class RegisterMap(_Model):
    """One Modbus value: where it is, how to decode it, what it means."""

    metric: Metric = Field(description="Metric name the value is published as.")
    address: int = Field(ge=0, le=65535, description="Register address (0-based).")
    table: Literal["holding", "input"] = Field(
        "holding", description="Register table: holding (FC 3) or input (FC 4)."
    )
    data_type: Literal["int16", "uint16", "int32", "uint32", "float32"] = Field(
        "uint16", description="How the register(s) decode; 32-bit types take two registers."
    )
    word_order: Literal["big", "little"] = Field(
        "big", description="Order of the two 16-bit words of a 32-bit value."
    )
    scale: float = Field(1.0, description="value = raw * scale + offset.")
    offset: float = Field(0.0, description="value = raw * scale + offset.")
    unit: str = Field(max_length=16, description="Unit of the scaled value, e.g. t, %, m/s.")
    source: Ident | None = Field(
        None, description="Sub-device id the reading belongs to; the sensor id when empty."
    )

    @property
    def count(self) -> int:
        return 1 if self.data_type in ("int16", "uint16") else 2


class FieldMap(_Model):
    """One JSON value: where it is in the document and what it means."""

    metric: Metric = Field(description="Metric name the value is published as.")
    path: str = Field(
        min_length=1, description="Dotted path into the JSON object, e.g. data.pm10 or a.0.b."
    )
    unit: str = Field(max_length=16, description="Unit of the scaled value.")
    scale: float = Field(1.0, description="value = raw * scale + offset.")
    offset: float = Field(0.0, description="value = raw * scale + offset.")
    source: Ident | None = Field(
        None, description="Sub-device id the reading belongs to; the sensor id when empty."
    )


class _SensorBase(_Model):
    id: Ident = Field(description="Sensor id (the readings' source).")
    enabled: bool = Field(True, description="Run this sensor.")
    interval_s: float = Field(5.0, gt=0, description="Seconds between readings (polls).")


class ModbusTcpSensor(_SensorBase):
    """A Modbus TCP device (e.g. a tower-crane black box) read with pymodbus."""

    type: Literal["modbus_tcp"] = Field(description="Adapter: Modbus TCP.")
    host: str = Field(description="Device host name or address.")
    port: int = Field(502, ge=1, le=65535, description="Modbus TCP port.")
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id.")
    timeout_s: float = Field(3.0, gt=0, description="Request timeout in seconds.")
    registers: list[RegisterMap] = Field(min_length=1, description="Values to read.")


class HttpJsonSensor(_SensorBase):
    """A sensor gateway answering JSON over HTTP, polled."""

    type: Literal["http_json"] = Field(description="Adapter: poll JSON over HTTP.")
    url: str = Field(description="URL polled with GET; ${VAR} takes parts from the environment.")
    timeout_s: float = Field(5.0, gt=0, description="Request timeout in seconds.")
    headers_env: dict[str, EnvName] = Field(
        default_factory=dict, description="HTTP header → environment variable holding its value."
    )
    fields: list[FieldMap] = Field(min_length=1, description="Values to take from the JSON.")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class SerialJsonSensor(_SensorBase):
    """A device writing one JSON object per line on a serial port."""

    type: Literal["serial_json"] = Field(description="Adapter: JSON lines on a serial device.")
    path: Path = Field(description="Serial device, e.g. /dev/ttyUSB0.")
    baudrate: int = Field(9600, gt=0, description="Line speed.")
    fields: list[FieldMap] = Field(min_length=1, description="Values to take from each line.")


class SimulatorSensor(_SensorBase):
    """The site simulator (edge/simulator.py) as a sensor source."""

    type: Literal["simulator"] = Field(description="Adapter: simulated site sensors.")
    devices: int = Field(6, ge=1, le=10_000, description="Simulated devices.")
    seed: int = Field(0, description="Random seed (deterministic values).")
    excursion_rate: float = Field(
        0.02, ge=0, le=1, description="Share of readings past warning/alarm levels."
    )


SensorConfig = Annotated[
    ModbusTcpSensor | HttpJsonSensor | SerialJsonSensor | SimulatorSensor,
    Field(discriminator="type"),
]


class ThresholdConfig(_Model):
    """Two-level threshold: warning (预警) and alarm (报警)."""

    warning: float | None = Field(None, description="Warning level.")
    alarm: float | None = Field(None, description="Alarm level.")


class EdgeConfig(_Model):
    """Everything one site gateway runs."""

    gateway: GatewayConfig = Field(description="The gateway: identity, broker, outbox, threads.")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Models to run.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras.")
    sensors: list[SensorConfig] = Field(default_factory=list, description="Sensor adapters.")
    thresholds: dict[str, ThresholdConfig] = Field(
        default_factory=dict, description="Per-metric or per-rule two-level thresholds."
    )
    config_id: str | None = Field(
        None, description="Id of the last hub config applied (set by the agent, not by hand)."
    )
    config_ts: datetime | None = Field(
        None, description="Issue time of the last hub config applied (set by the agent)."
    )

    @model_validator(mode="after")
    def _unique(self) -> EdgeConfig:
        for what, ids in (
            ("cameras", [c.id for c in self.cameras]),
            ("sensors", [s.id for s in self.sensors]),
            ("zones", [z.id for c in self.cameras for z in c.zones]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{what} ids must be unique: {', '.join(dupes)} repeated")
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)


# --- loading with line numbers ---------------------------------------------------------------


def _node_at(root: yaml.Node, loc: tuple[int | str, ...]) -> tuple[yaml.Node, bool]:
    """The deepest node along ``loc``; True when the whole path was found (the key exists).

    Parts that are not in the document (pydantic's union tags) are skipped."""
    node = root
    found = True
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    nxt = v
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            nxt = node.value[part]
        if nxt is None:
            found = False
            continue
        node, found = nxt, True
    return node, found


def _key_node(root: yaml.Node, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The key node of the last part of ``loc`` when present (extra keys are reported there)."""
    if not loc or not isinstance(loc[-1], str):
        return None
    parent, _ = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        for k, _v in parent.value:
            if isinstance(k, yaml.ScalarNode) and k.value == loc[-1]:
                return k
    return None


_TAGS = {"modbus_tcp", "http_json", "serial_json", "simulator"}


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAGS and i > 0 and isinstance(loc[i - 1], int):
            continue  # the discriminator tag pydantic adds to the location
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _error_message(path: Path, root: yaml.Node | None, err: ValidationError) -> str:
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    line = 1
    if root is not None:
        node = _key_node(root, loc) if first["type"] == "extra_forbidden" else None
        if node is None:
            node, _ = _node_at(root, loc)
        line = node.start_mark.line + 1
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (not part of the config; check its spelling and level)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif "input" in first and first["type"] not in ("model_type", "dict_type", "list_type"):
        value = first["input"]
        if isinstance(value, str | int | float | bool) or value is None:
            msg += f" (got {value!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return f"{path}:{line}: {_dotted(loc)}: {msg}" + (more if len(errors) > 1 else "")


def parse_config(text: str, path: Path, base_dir: Path | None = None) -> EdgeConfig:
    """Validate config ``text`` that came from ``path`` (used in error messages)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if e.context_mark is not None and "<stream end>" in (e.problem or ""):
            mark = e.context_mark  # an unclosed bracket or quote: where it was opened
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {e.problem or e}") from None
    if root is None or data is None:
        raise ConfigError(f"{path}:1: the config is empty (at least gateway.device and project)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping (key: value), not a list")
    try:
        return EdgeConfig.model_validate(
            data, context={"base_dir": base_dir if base_dir is not None else path.parent}
        )
    except ValidationError as e:
        raise ConfigError(_error_message(path, root, e)) from None


def load_config(path: str | Path) -> EdgeConfig:
    """Read and validate a gateway config; one :class:`ConfigError` naming key, file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config: {e.strerror or e}") from None
    return parse_config(text, p, p.resolve().parent)


# --- hub pushes ------------------------------------------------------------------------------


def apply_hub_config(config: EdgeConfig, push: HubConfig) -> EdgeConfig:
    """``config`` with the hub's push applied (a new object; ``config`` is unchanged).

    Zones: a camera named in any pushed zone gets exactly the pushed zones (the hub owns its
    zone list); cameras the push does not name keep theirs. Edge-only zone settings
    (``crowd_limit``, ``loiter_s``) carry over from the zone of the same id, or come from the
    pushed thresholds ``crowding`` (alarm: the limit) and ``loitering`` (warning: seconds).
    Thresholds merge over the local ones; the gallery version and model versions replace.
    """
    if push.device != config.gateway.device:
        raise ConfigError(
            f"hub config for device {push.device!r} pushed to gateway {config.gateway.device!r}"
        )
    known = {c.id for c in config.cameras}
    unknown = sorted({z.camera for z in push.zones} - known)
    if unknown:
        raise ConfigError(f"hub config names cameras this gateway does not run: {unknown}")
    crowd = push.thresholds.get("crowding")
    loiter = push.thresholds.get("loitering")
    old_zones = {z.id: z for c in config.cameras for z in c.zones}
    cameras = []
    for cam in config.cameras:
        pushed = [z for z in push.zones if z.camera == cam.id]
        if not pushed:
            cameras.append(cam)
            continue
        zones = []
        for z in pushed:
            old = old_zones.get(z.id)
            limit = old.crowd_limit if old else None
            if crowd is not None and crowd.alarm is not None:
                limit = max(1, int(crowd.alarm))
            loiter_s = old.loiter_s if old else None
            if loiter is not None and loiter.warning is not None and loiter.warning > 0:
                loiter_s = float(loiter.warning)
            zones.append(
                ZoneConfig(
                    id=z.id,
                    name=z.name,
                    type=z.type,
                    polygon=list(z.polygon),
                    required_ppe=list(z.required_ppe),
                    allowed_roles=list(z.allowed_roles),
                    crowd_limit=limit,
                    loiter_s=loiter_s,
                )
            )
        cameras.append(cam.model_copy(update={"zones": zones}))
    thresholds = dict(config.thresholds)
    for name, t in push.thresholds.items():
        thresholds[name] = ThresholdConfig(warning=t.warning, alarm=t.alarm)
    models = config.models.model_copy(
        update={
            "gallery_version": push.gallery_version or config.models.gallery_version,
            "versions": {**config.models.versions, **push.models},
        }
    )
    data: dict[str, Any] = {
        "cameras": cameras,
        "thresholds": thresholds,
        "models": models,
        "config_id": str(push.id),
        "config_ts": push.ts,
    }
    try:
        return EdgeConfig.model_validate(config.model_copy(update=data).model_dump())
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise ConfigError(
            f"hub config {push.id}: {_dotted(tuple(first['loc']))}: {first['msg']}"
        ) from None
