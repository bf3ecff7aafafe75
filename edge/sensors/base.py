"""The adapter interface, the thread that runs one, and JSON field extraction."""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from edge.config import (
    FieldMap,
    HttpJsonSensor,
    ModbusTcpSensor,
    SensorConfig,
    SerialJsonSensor,
    SimulatorSensor,
)
from smartsite.protocol.messages import Reading

log = logging.getLogger(__name__)

Emit = Callable[[list[Reading]], None]


class SensorError(Exception):
    """A device that cannot be read now (the runner retries with backoff)."""


class SensorAdapter(ABC):
    """One sensor device or gateway. Subclasses implement ``poll`` (or override ``run``)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.id: str = config.id

    @abstractmethod
    def poll(self) -> list[Reading]:
        """Read the device once; raise :class:`SensorError` when it cannot be read."""

    def run(self, emit: Emit, stop: threading.Event, on_error: Callable[[str], None]) -> None:
        """Poll every ``interval_s`` until ``stop``; errors back off exponentially."""
        interval = float(self.config.interval_s)
        failures = 0
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                readings = self.poll()
                failures = 0
                if readings:
                    emit(readings)
                next_at += interval
                if next_at < time.monotonic():  # fell behind: no burst to catch up
                    next_at = time.monotonic() + interval
            except Exception as e:
                failures += 1
                self.close()
                on_error(f"{type(e).__name__}: {e}" if not isinstance(e, SensorError) else str(e))
                next_at = time.monotonic() + min(60.0, interval * 2 ** min(failures - 1, 10))
            stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:  # noqa: B027  # optional hook
        """Release the connection (called on errors and at stop)."""


class SensorRunner:
    """Runs one adapter in a thread; keeps its state for the gateway status."""

    def __init__(self, adapter: SensorAdapter, emit: Emit) -> None:
        self.adapter = adapter
        self.emit = emit
        self.state = "starting"
        self.last_error = ""
        self.readings = 0
        self.errors = 0
        self._logged = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return self.adapter.id

    def _emit(self, readings: list[Reading]) -> None:
        if self.state != "ok":
            if self._logged:
                log.info("sensor %s: readings again", self.id)
            self._logged = False
            self.state, self.last_error = "ok", ""
        self.readings += len(readings)
        self.emit(readings)

    def _error(self, reason: str) -> None:
        self.errors += 1
        self.state, self.last_error = "error", reason
        if not self._logged:  # once per outage, not once per attempt
            log.error("sensor %s (%s): %s; retrying", self.id, self.adapter.config.type, reason)
            self._logged = True
        else:
            log.debug("sensor %s: %s", self.id, reason)

    def _run(self) -> None:
        try:
            self.adapter.run(self._emit, self._stop, self._error)
        except Exception as e:
            self.state, self.last_error = "failed", f"{type(e).__name__}: {e}"
            log.exception("sensor %s stopped", self.id)
        finally:
            self.adapter.close()

    def start(self) -> SensorRunner:
        self._thread = threading.Thread(target=self._run, name=f"sensor-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def status_text(self) -> str:
        return f"{self.state}: {self.last_error}"[:200] if self.last_error else self.state


# --- JSON documents ------------------------------------------------------------------------------


def extract(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` in a JSON document (list indexes are numbers)."""
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                raise KeyError(path)
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def field_readings(
    doc: Any, fields: Sequence[FieldMap], default_source: str, time_: datetime | None = None
) -> tuple[list[Reading], list[str]]:
    """Readings for ``fields`` found in ``doc`` and the paths that were missing or not numbers."""
    out: list[Reading] = []
    missing: list[str] = []
    when = time_ or datetime.now(UTC)
    for f in fields:
        try:
            raw = extract(doc, f.path)
            if isinstance(raw, bool):
                raw = float(raw)
            value = float(raw) * f.scale + f.offset
        except (KeyError, IndexError, TypeError, ValueError):
            missing.append(f.path)
            continue
        if not math.isfinite(value):
            missing.append(f.path)
            continue
        out.append(
            Reading(
                metric=f.metric,
                value=value,
                unit=f.unit,
                time=when,
                source=f.source or default_source,
            )
        )
    return out, missing


def build_adapter(config: SensorConfig, project: str = "site") -> SensorAdapter:
    """The adapter for one ``sensors:`` entry of the gateway config."""
    if isinstance(config, ModbusTcpSensor):
        from edge.sensors.modbus import ModbusTcpAdapter

        return ModbusTcpAdapter(config)
    if isinstance(config, HttpJsonSensor):
        from edge.sensors.http_json import HttpJsonAdapter

        return HttpJsonAdapter(config)
    if isinstance(config, SerialJsonSensor):
        from edge.sensors.serial_json import SerialJsonAdapter

        return SerialJsonAdapter(config)
    if isinstance(config, SimulatorSensor):
        from edge.sensors.simulated import SimulatorAdapter

        return SimulatorAdapter(config, project)
    raise TypeError(f"no adapter for {type(config).__name__}")
