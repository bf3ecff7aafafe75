"""Restart the broker, and separately the database, in the middle of a 10,000-message stream."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from conftest import count, wait_until

from edge.simulator import register_site, run
from smartsite.db.migrate import upgrade
from smartsite.embedded import EmbeddedPostgres, MosquittoBroker
from smartsite.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.slow
PROJECT = "P-RESTART"
DEVICES, RATE, SECONDS = 20, 100.0, 5.0  # 10,000 messages over about five seconds


def stream_with_restart(endpoint: MqttEndpoint, settings: Settings, restart: Callable[[], None]):  # type: ignore[no-untyped-def]
    """Publish the stream, calling ``restart`` (in its own thread) once 4,000 messages are out."""
    fired = threading.Event()
    threads: list[threading.Thread] = []

    def progress(n: int) -> None:
        if n >= 4000 and not fired.is_set():
            fired.set()
            t = threading.Thread(target=restart)
            t.start()
            threads.append(t)

    res = run(
        endpoint,
        settings.topic_prefix,
        PROJECT,
        DEVICES,
        RATE,
        SECONDS,
        realtime=True,
        silence_rate=0.0,
        on_progress=progress,
    )
    for t in threads:
        t.join()
    assert fired.is_set()
    assert res.messages == 10_000
    return res


def assert_exactly_once(conn, res) -> None:  # type: ignore[no-untyped-def]
    wait_until(
        lambda: count(conn, "SELECT count(*) FROM telemetry") >= res.readings,
        timeout=120,
        what="all 10,000 messages stored",
    )
    assert count(conn, "SELECT count(DISTINCT message_id) FROM telemetry") == 10_000
    assert count(conn, "SELECT count(*) FROM telemetry") == res.readings
    stored = {r[0] for r in conn.execute("SELECT DISTINCT message_id FROM telemetry")}
    assert stored == set(res.ids)


def test_broker_restart_mid_stream_loses_nothing(
    db, pg_url, settings, start_worker, tmp_path
) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto").start()
    try:
        register_site(pg_url, PROJECT, DEVICES)
        worker = start_worker(pg_url, broker.endpoint)
        res = stream_with_restart(broker.endpoint, settings, broker.restart)
        assert_exactly_once(db, res)
        assert worker.stats.dead_lettered.total() == 0
    finally:
        broker.stop()


def test_database_restart_mid_stream_loses_nothing(
    broker, settings, start_worker, tmp_path
) -> None:
    import psycopg

    pg = EmbeddedPostgres(tmp_path / "pgdata").start()
    try:
        upgrade(pg.url, settings)
        register_site(pg.url, PROJECT, DEVICES)
        worker = start_worker(pg.url, broker.endpoint)
        res = stream_with_restart(broker.endpoint, settings, pg.restart)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            assert_exactly_once(conn, res)
        assert worker.stats.dead_lettered.total() == 0
    finally:
        pg.stop()
