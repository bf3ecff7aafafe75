"""Publishing helpers for tests: real paho clients, QoS 1, waiting for PUBACKs."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt

from smartsite.settings import MqttEndpoint


def publish_raw(
    endpoint: MqttEndpoint, messages: list[tuple[str, bytes]], timeout: float = 60
) -> None:
    """Publish (topic, payload) pairs with QoS 1 and wait until the broker acknowledged all."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if endpoint.protocol == 5 else mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    done = threading.Semaphore(0)
    client.on_publish = lambda *_a: done.release()
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        for _ in messages:
            if not done.acquire(timeout=timeout):
                raise TimeoutError("broker did not acknowledge every message")
    finally:
        client.disconnect()
        client.loop_stop()
