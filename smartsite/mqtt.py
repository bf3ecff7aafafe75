"""paho-mqtt clients configured the one way every part of the system uses them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from smartsite.settings import MqttEndpoint

SESSION_EXPIRY_S = 7 * 24 * 3600

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Delivery:
    """A message taken with manual acknowledgement, tagged with the connection it came on."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


def ready_at_suback(ready: threading.Event, name: str) -> Callable[..., None]:
    """An ``on_subscribe`` callback that sets ``ready`` once the broker holds every
    subscription (SUBACK), not at CONNACK: a message published between the two on a fresh
    session would not be queued for the subscriber."""

    def on_subscribe(_c: object, _u: object, _mid: int, codes: list[object], _p: object) -> None:
        if all(not getattr(c, "is_failure", False) for c in codes):
            ready.set()
        else:
            log.error("%s: the broker refused a subscription: %s", name, codes)

    return on_subscribe


def ack(client: mqtt.Client, deliveries: list[Delivery], generation: int) -> None:
    """Acknowledge what came on the current connection. Packet ids of an earlier connection
    mean nothing on this one; the broker redelivers those messages instead."""
    for d in deliveries:
        if d.qos > 0 and d.generation == generation:
            client.ack(d.mid, d.qos)


def make_client(
    endpoint: MqttEndpoint, client_id: str, *, persistent: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client for ``endpoint`` (v5 or 3.1.1), credentials and TLS applied."""
    kwargs: dict[str, object] = {}
    if endpoint.protocol == 4:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if endpoint.protocol == 5 else mqtt.MQTTv311,
        manual_ack=manual_ack,
        **kwargs,  # type: ignore[arg-type]
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def connect_kwargs(
    endpoint: MqttEndpoint, *, persistent: bool, receive_maximum: int | None = None
) -> dict[str, object]:
    """``connect()`` keywords: a session that outlives the connection, flow control."""
    if endpoint.protocol != 5:
        return {}
    props = Properties(PacketTypes.CONNECT)
    if persistent:
        props.SessionExpiryInterval = SESSION_EXPIRY_S
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return {"clean_start": not persistent, "properties": props}


def connect_persistent(
    client: mqtt.Client, endpoint: MqttEndpoint, *, receive_maximum: int, give_up_after: float = 60
) -> None:
    """Connect ``client`` with a persistent session, retrying while the broker is starting;
    paho reconnects by itself after this first connection."""
    for attempt in Retrying(
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(give_up_after),
        retry=retry_if_exception_type(OSError),
        reraise=True,
    ):
        with attempt:
            client.connect(
                endpoint.host,
                endpoint.port,
                keepalive=30,
                **connect_kwargs(endpoint, persistent=True, receive_maximum=receive_maximum),
            )
