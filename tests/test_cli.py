"""The ``smartsite`` command line: every command explains itself, bad settings are named."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from smartsite.cli import app
from smartsite.settings import get_settings


def _walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, cmd
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        if not sub.hidden:
            yield from _walk(sub, [*path, name])


COMMANDS = list(_walk(typer.main.get_command(app), []))
IDS = [" ".join(path) or "smartsite" for path, _ in COMMANDS]


def _plain(text: str) -> str:
    """Help text without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in ("DATABASE_URL", "MQTT_URL", "SMARTSITE_EMBEDDED_BROKER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SMARTSITE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_walk_finds_the_known_commands() -> None:
    found = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "demo", "hub", "simulate", "db upgrade", "protocol schema"} <= found


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_every_command_has_help(path: list[str], cmd: Any) -> None:
    assert cmd.help and cmd.help.strip(), f"`smartsite {' '.join(path)}` has no help text"
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="smartsite")
    assert result.exit_code == 0, result.output
    out = _plain(result.output)
    assert f"Usage: smartsite {' '.join(path)}".strip() in out
    purpose = _plain(cmd.help.strip().splitlines()[0])
    assert purpose in out
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        assert getattr(param, "help", None), (
            f"`smartsite {' '.join(path)}`: {param.name} has no help"
        )
        assert _plain(param.help) in out


BAD_SETTINGS = [
    ("SMARTSITE_EMBEDDED_BROKER", "nonsense", "must be auto, mosquitto or amqtt"),
    ("SMARTSITE_RETENTION_DAYS", "0", "greater than or equal to 1"),
    ("SMARTSITE_INGEST_RECEIVE_MAXIMUM", "70000", "less than or equal to 65535"),
    ("SMARTSITE_METRICS_PORT", "http", "valid integer"),
]
# Commands that read the settings first thing; bad settings stop them before any work.
READS_SETTINGS = [
    ["demo"],
    ["hub"],
    ["simulate"],
    ["db", "upgrade"],
    ["bench", "ingest"],
    ["protocol", "schema", "--out", "{tmp}"],
]


@pytest.mark.parametrize("command", READS_SETTINGS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize(
    ("var", "value", "problem"), BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS]
)
def test_bad_settings_exit_2_naming_the_variable(
    command: list[str], var: str, value: str, problem: str, tmp_path: Path
) -> None:
    args = [a.format(tmp=tmp_path / "out") for a in command]
    result = CliRunner().invoke(app, args, env={var: value})
    out = _plain(result.output)
    assert result.exit_code == 2, out
    assert "bad settings in the environment" in out
    assert f"{var}:" in out
    assert problem in out
    assert "Traceback" not in out
    assert not (tmp_path / "home").exists(), "nothing may be started on bad settings"
