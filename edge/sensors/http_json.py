"""JSON over HTTP: a URL polled with GET, values taken by dotted paths."""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request

from edge.config import HttpJsonSensor
from edge.sensors.base import SensorAdapter, SensorError, field_readings
from smartsite.protocol.messages import Reading

log = logging.getLogger(__name__)


def _expand(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise SensorError(f"environment variable {m.group(1)} is not set")
        return os.environ[m.group(1)]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, text)


class HttpJsonAdapter(SensorAdapter):
    config: HttpJsonSensor

    def __init__(self, config: HttpJsonSensor) -> None:
        super().__init__(config)
        self._warned: set[str] = set()

    def poll(self) -> list[Reading]:
        c = self.config
        headers = {"Accept": "application/json"}
        for header, var in c.headers_env.items():
            if var not in os.environ:
                raise SensorError(f"environment variable {var} (header {header}) is not set")
            headers[header] = os.environ[var]
        req = urllib.request.Request(_expand(c.url), headers=headers)  # noqa: S310  # http(s) only (validated)
        try:
            with urllib.request.urlopen(req, timeout=c.timeout_s) as resp:  # noqa: S310
                body = resp.read(1 << 20)
        except urllib.error.HTTPError as e:
            raise SensorError(f"GET {c.url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SensorError(f"GET {c.url}: {reason}") from e
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise SensorError(f"GET {c.url}: not JSON ({e})") from e
        readings, missing = field_readings(doc, c.fields, self.id)
        new = set(missing) - self._warned
        if new:
            log.warning("sensor %s: no number at %s in %s", self.id, ", ".join(sorted(new)), c.url)
            self._warned |= new
        return readings
