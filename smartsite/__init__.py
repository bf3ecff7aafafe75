"""Shared core: MQTT protocol, settings, hub schema, embedded services, CLI."""

__version__ = "0.1.0"
