"""The site simulator (edge/simulator.py) as one more sensor source of a real gateway."""

from __future__ import annotations

import time

from edge.config import SimulatorSensor
from edge.sensors.base import SensorAdapter
from edge.simulator import SiteModel
from smartsite.protocol.messages import Reading


class SimulatorAdapter(SensorAdapter):
    config: SimulatorSensor

    def __init__(self, config: SimulatorSensor, project: str) -> None:
        super().__init__(config)
        self.model = SiteModel(
            project,
            config.devices,
            seed=config.seed,
            excursion_rate=config.excursion_rate,
            silence_rate=0.0,
        )
        self._start = time.monotonic()

    def poll(self) -> list[Reading]:
        t = time.monotonic() - self._start
        msgs = list(self.model.tick(t))
        return [r.model_copy(update={"time": m.ts}) for m in msgs for r in m.readings]
