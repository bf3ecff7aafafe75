"""Sensor adapters: readings from site sensor gateways, normalised into protocol telemetry.

An adapter reads its device (``poll`` once per interval, or ``run`` for line-driven devices)
and returns protocol :class:`~smartsite.protocol.Reading` objects with units; the agent wraps
them into the gateway's :class:`~smartsite.protocol.Telemetry` messages. Each adapter runs in
its own thread (:class:`SensorRunner`): blocking client libraries (pymodbus, urllib, a serial
port) stay simple, and one dead device never holds up another.
"""

from edge.sensors.base import SensorAdapter, SensorRunner, build_adapter, field_readings

__all__ = ["SensorAdapter", "SensorRunner", "build_adapter", "field_readings"]
