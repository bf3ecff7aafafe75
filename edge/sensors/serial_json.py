"""JSON lines on a serial device: one object per line, values taken by dotted paths.

The port is opened raw at the configured speed (termios; no pyserial needed); a line that is
not JSON or carries none of the fields is counted and warned about once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import termios
import threading
import tty
from collections.abc import Callable

from edge.config import SerialJsonSensor
from edge.sensors.base import Emit, SensorAdapter, SensorError, field_readings
from smartsite.protocol.messages import Reading

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024


def _baud(rate: int) -> int:
    name = f"B{rate}"
    if not hasattr(termios, name):
        raise SensorError(f"unsupported baud rate {rate}")
    return int(getattr(termios, name))


class SerialJsonAdapter(SensorAdapter):
    config: SerialJsonSensor

    def __init__(self, config: SerialJsonSensor) -> None:
        super().__init__(config)
        self._fd: int | None = None
        self.bad_lines = 0
        self._warned = False

    def _open(self) -> int:
        path = str(self.config.path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            raise SensorError(f"cannot open {path}: {e.strerror}") from e
        if os.isatty(fd):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            speed = _baud(self.config.baudrate)
            attrs[4] = attrs[5] = speed  # ispeed, ospeed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        return fd

    def poll(self) -> list[Reading]:  # pragma: no cover - line-driven, see run()
        raise NotImplementedError("serial_json is line-driven")

    def parse_line(self, line: bytes) -> list[Reading]:
        text = line.strip()
        if not text:
            return []
        try:
            doc = json.loads(text)
        except ValueError:
            self._bad(f"not JSON: {text[:80]!r}")
            return []
        readings, _missing = field_readings(doc, self.config.fields, self.id)
        if not readings:
            self._bad(f"none of the configured fields in {text[:80]!r}")
        return readings

    def _bad(self, what: str) -> None:
        self.bad_lines += 1
        if not self._warned:
            log.warning(
                "sensor %s (%s): %s (further bad lines counted only)",
                self.id,
                self.config.path,
                what,
            )
            self._warned = True

    def run(self, emit: Emit, stop: threading.Event, on_error: Callable[[str], None]) -> None:
        failures = 0
        while not stop.is_set():
            try:
                fd = self._fd = self._open()
                failures = 0
                buf = b""
                while not stop.is_set():
                    ready, _, _ = select.select([fd], [], [], 0.5)
                    if not ready:
                        continue
                    try:
                        chunk = os.read(fd, 4096)
                    except BlockingIOError:
                        continue
                    except OSError as e:  # EIO: the other side of a pty went away, unplugged
                        raise SensorError(f"{self.config.path}: {e.strerror}") from e
                    if not chunk:
                        raise SensorError(f"{self.config.path}: end of file")
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    if len(buf) > MAX_LINE:
                        self._bad("line longer than 64 KiB")
                        buf = b""
                    readings = [r for line in lines for r in self.parse_line(line)]
                    if readings:
                        emit(readings)
            except SensorError as e:
                failures += 1
                on_error(str(e))
            finally:
                self.close()
            stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
