"""The example gateway config the README points at stays valid."""

from pathlib import Path

from edge.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "edge-gateway.example.yaml"


def test_the_example_gateway_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert [c.id for c in cfg.cameras] == ["gate-cam", "crane-cam"]
    assert {s.id for s in cfg.sensors} == {"CRANE-01", "DUST-01"}
