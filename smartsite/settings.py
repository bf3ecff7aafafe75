"""Settings from the environment (pydantic-settings); configured URLs beat embedded services."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from smartsite.protocol.topics import DEFAULT_PREFIX


class MqttEndpoint(BaseModel):
    """A broker address parsed from ``mqtt://user:pass@host:port?protocol=5``."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    protocol: int = Field(5, description="5 for MQTT v5, 4 for MQTT 3.1.1.")

    @classmethod
    def from_url(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT_URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"MQTT_URL {url!r}: no host")
        tls = parts.scheme in ("mqtts", "ssl")
        query = parse_qs(parts.query)
        protocol = int(query.get("protocol", ["5"])[0])
        if protocol not in (4, 5):
            raise ValueError(f"MQTT_URL {url!r}: protocol must be 5 (v5) or 4 (3.1.1)")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            protocol=protocol,
        )

    def with_credentials(self, username: str | None, password: str | None) -> MqttEndpoint:
        return self.model_copy(update={"username": username, "password": password})


class Settings(BaseSettings):
    """Everything configurable; each field is an environment variable (``SMARTSITE_`` prefix
    unless named otherwise)."""

    model_config = SettingsConfigDict(env_prefix="SMARTSITE_", extra="ignore")

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "SMARTSITE_DATABASE_URL"),
        description="PostgreSQL/TimescaleDB URL; unset: the embedded PostgreSQL.",
    )
    mqtt_url: str | None = Field(
        None,
        validation_alias=AliasChoices("MQTT_URL", "SMARTSITE_MQTT_URL"),
        description="Broker URL; unset: the embedded broker.",
    )
    home: Path = Field(
        Path.home() / ".smartsite",
        description="Directory for the embedded services' data, kept between runs.",
    )
    topic_prefix: str = Field(DEFAULT_PREFIX, description="Prefix of every protocol topic.")
    embedded_broker: str = Field(
        "auto", description="auto (mosquitto if on PATH, else amqtt), mosquitto or amqtt."
    )
    hub_mqtt_username: str = Field("hub", description="Broker user the hub services use.")
    hub_mqtt_password: str | None = Field(None, description="Its password (from the environment).")
    retention_days: int = Field(365, ge=1, description="Raw telemetry kept this many days.")
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB compresses chunks older.")
    chunk_interval: str = Field("1 day", description="TimescaleDB chunk interval for raw tables.")
    dedupe_window_days: int = Field(
        30, ge=1, description="Message ids remembered for idempotent ingest this long."
    )
    ingest_batch_messages: int = Field(
        1000, ge=1, description="Write a batch at this many messages..."
    )
    ingest_batch_seconds: float = Field(0.25, gt=0, description="...or after this many seconds.")
    ingest_store_processes: int = Field(
        2,
        ge=1,
        le=16,
        description="Processes per ingest worker that decode and write batches in parallel.",
    )
    ingest_receive_maximum: int = Field(
        20000, ge=1, le=65535, description="Unacknowledged messages the broker may send us."
    )
    secret_key: str | None = Field(
        None,
        description="Key for hashing and encrypting identity numbers; unset: a random key is "
        "generated once into <home>/secret.key (embedded default only).",
    )
    ingest_shared_group: str | None = Field(
        None,
        description="MQTT 5 shared-subscription group ($share/<group>/...) when several ingest "
        "workers split the load; unset: a plain persistent subscription (one worker). mosquitto "
        "2.0 does not restore shared subscriptions from persistence after its own restart, so "
        "messages published before the workers re-subscribe are lost to the group: scale out "
        "behind a broker that keeps them (EMQX, HiveMQ, VerneMQ).",
    )
    ingest_name: str = Field(
        "ingest",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="Names this hub's ingest workers and their MQTT client ids "
        "(smartsite-<name>-<n>). Each hub replica needs its own, kept across its restarts: a "
        "shared client id makes replicas take the session from each other in turn, and a new "
        "one leaves the old persistent session behind, still holding its queued messages.",
    )
    smtp_url: str | None = Field(
        None,
        description="Mail server for alert e-mails: smtp://[user:pass@]host[:port] (STARTTLS "
        "when the server offers it) or smtps://...; unset: e-mail channels wait undelivered.",
    )
    smtp_from: str = Field("smartsite@localhost", description="Sender of alert e-mails.")
    notify_max_attempts: int = Field(
        10, ge=1, description="Deliveries tried this often (backing off) before marked failed."
    )
    notify_retry_seconds: float = Field(
        5.0, gt=0, description="First retry delay of a failed delivery; doubles, capped at 1 h."
    )
    notify_poll_seconds: float = Field(
        1.0, gt=0, description="The notifier looks for due deliveries at least this often."
    )
    notify_timeout_seconds: float = Field(
        10.0, gt=0, description="Per webhook request / SMTP session."
    )
    metrics_port: int | None = Field(None, description="Prometheus exporter port; None: off.")
    bim_cache_dir: Path | None = Field(
        None,
        description="Where the per-storey GLB files of BIM models are cached (one folder per "
        "IFC file hash); unset: <home>/bim-cache.",
    )

    # --- models and faces (issue 4) ---
    models_dir: Path | None = Field(
        None,
        description="Where model files live (`smartsite models fetch` puts them there, verified "
        "by sha256; nothing downloads at run time); unset: <home>/models.",
    )
    face_match_threshold: float = Field(
        0.363,
        ge=-1,
        le=1,
        description="Cosine similarity (SFace) from which a face is taken for an enrolled "
        "worker; below it the face is unknown. 0.363 is OpenCV Zoo's SFace threshold; measured "
        "on ../shared/datasets/faces the same person scores >= 0.73, different people <= 0.27.",
    )
    face_detect_score: float = Field(
        0.8, gt=0, lt=1, description="YuNet confidence from which a face counts as detected."
    )
    ort_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="Threads per onnxruntime session (intra-op) and for OpenCV (cv2.setNumThreads"
        "): a 2-core gateway runs several models side by side, so each keeps to this many "
        "instead of every pool taking all cores and fighting.",
    )

    @property
    def models_path(self) -> Path:
        """The models directory, resolved (``models_dir`` or <home>/models)."""
        return self.models_dir or self.home / "models"

    # --- server (issue 7) ---
    server_host: str = Field("127.0.0.1", description="Address the API and web UI listen on.")
    server_port: int = Field(8000, ge=1, le=65535, description="Port of the API and web UI.")
    token_minutes: int = Field(
        480, ge=1, le=7 * 24 * 60, description="Lifetime of a login token (a working shift)."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user name (or 4x per client) before refusing..."
    )
    login_window_seconds: int = Field(900, ge=1, description="...within this many seconds.")
    upload_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest photo accepted with an alert action."
    )

    # --- alert engine (issue 5) ---
    alerts_name: str = Field(
        "alerts",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="Names the alert engine's MQTT client id (smartsite-<name>) and so its "
        "persistent session; keep it across restarts (a new one abandons the queued messages).",
    )
    alerts_timezone: str = Field(
        "Asia/Shanghai",
        description="IANA time zone in which rules' day/night windows (e.g. noise limits "
        "06:00-22:00) are read; one zone for all projects.",
    )
    alerts_batch_messages: int = Field(
        500, ge=1, description="The engine commits (then acknowledges) at this many messages..."
    )
    alerts_batch_seconds: float = Field(
        0.1, gt=0, description="...or after this many seconds (alert latency vs. commits)."
    )
    alerts_tick_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the engine checks time-based actions: silent devices, "
        "auto-clear, repeat notifications, escalation to the regulator.",
    )
    alerts_rules_refresh_seconds: float = Field(
        5.0, gt=0, description="How often the engine looks for changed rules and devices."
    )
    alerts_startup_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="After connecting, the engine waits this long before judging devices "
        "silent, so the messages the broker queued while it was away are read first.",
    )
    alerts_state_flush_seconds: float = Field(
        30.0,
        ge=0,
        description="A target whose state only moved its last-reading time is written back at "
        "most this often (every change that matters is written at once).",
    )
    alerts_receive_maximum: int = Field(
        2000, ge=1, le=65535, description="Unacknowledged messages the broker may send the engine."
    )
    alerts_low_credit_score: float = Field(
        60.0,
        ge=0,
        le=1000,
        description="An enterprise on the project scoring below this (or graded C or D) has "
        "low credit: its alerts rank higher, with a factor that says so.",
    )

    # --- credit (issue 5; rules in alerts/credit.py) ---
    credit_decay_days: float = Field(
        730.0,
        gt=0,
        description="A credit record's points fade linearly with its age, to nothing after "
        "this many days (730: two years, the span most local credit schemes count).",
    )
    credit_grade_a: float = Field(
        90.0, ge=0, le=100, description="Score from which the credit grade is A."
    )
    credit_grade_b: float = Field(
        75.0, ge=0, le=100, description="Score from which the grade is B (below A's)."
    )
    credit_grade_c: float = Field(
        60.0,
        ge=0,
        le=100,
        description="Score from which the grade is C (below B's); lower is D, and so is any "
        "blacklisted enterprise or person.",
    )
    credit_recompute_hours: float = Field(
        24.0,
        gt=0,
        description="The hub recomputes every credit score this often, so that records fade "
        "and blacklist entries end on time without a new record.",
    )

    @field_validator("alerts_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (IANA name, e.g. Asia/Shanghai)") from None
        return v

    @model_validator(mode="after")
    def _grades(self) -> Settings:
        if not self.credit_grade_a > self.credit_grade_b > self.credit_grade_c:
            raise ValueError(
                "credit grade thresholds must fall: SMARTSITE_CREDIT_GRADE_A > _B > _C"
            )
        return self

    @field_validator("embedded_broker")
    @classmethod
    def _broker_kind(cls, v: str) -> str:
        if v not in ("auto", "mosquitto", "amqtt"):
            raise ValueError("must be auto, mosquitto or amqtt")
        return v


@lru_cache
def get_settings() -> Settings:
    return Settings()
