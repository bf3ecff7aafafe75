"""The embedded default: `smartsite demo` with nothing configured, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smartsite.embedded import MosquittoBroker

pytestmark = pytest.mark.slow

RESULT_RE = re.compile(
    r"this run: published (\d+) messages / (\d+) readings; stored (\d+) messages / (\d+) "
    r"readings\s+in the database for DEMO-001 \(this run and earlier ones\): stored (\d+) "
    r"messages / (\d+) readings"
)


def run_demo(home: Path, broker: str | None) -> tuple[int, str, list[int]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "MQTT_URL") and not k.startswith("SMARTSITE_")
    }
    env.update(SMARTSITE_HOME=str(home), COLUMNS="200")
    if broker:
        env["SMARTSITE_EMBEDDED_BROKER"] = broker
    proc = subprocess.run(
        [sys.executable, "-m", "smartsite.cli", "demo", "--seconds", "4", "--devices", "6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    m = RESULT_RE.search(out)
    assert m, f"no result line in the demo's output:\n{out}"
    return proc.returncode, out, [int(x) for x in m.groups()]


@pytest.mark.parametrize("broker", [None, "amqtt"], ids=["default-broker", "amqtt"])
def test_demo_runs_on_the_embedded_default_and_keeps_its_data(
    tmp_path: Path, broker: str | None
) -> None:
    home = tmp_path / "smartsite-home"
    rc, out, first = run_demo(home, broker)
    assert rc == 0, out
    published, readings, stored, stored_readings, total, total_readings = first
    assert published > 0 and readings >= published
    assert (stored, stored_readings) == (published, readings)
    assert (total, total_readings) == (published, readings)  # a fresh home holds this run only
    assert "every message of this run was stored exactly once" in out
    assert "started PostgreSQL (embedded" in out and "started MQTT broker (embedded" in out
    assert (home / "pgdata" / "PG_VERSION").is_file()
    used = "mosquitto" if broker is None and MosquittoBroker.available() else "amqtt"
    assert (home / used).is_dir()
    assert {p.name for p in home.iterdir()} & {"mosquitto", "amqtt"} == {used}
    # mosquitto checks passwords; amqtt cannot, and the demo says so
    assert ("does not check passwords" in out) == (used == "amqtt")
    if used == "mosquitto":
        assert "allow_anonymous false" in (home / used / "mosquitto.conf").read_text()
    assert not (home / "broker.json").exists(), "the embedded broker was left registered"

    rc, out, second = run_demo(home, broker)
    assert rc == 0, out
    published2, readings2, stored2, stored_readings2, total2, total_readings2 = second
    assert (stored2, stored_readings2) == (published2, readings2)
    assert "0 migrations applied now" in out
    # the first run's data is still there, next to the second run's
    assert (total2, total_readings2) == (total + published2, total_readings + readings2)
