"""Run ingest workers until told to stop; prune past-retention data on the side."""

from __future__ import annotations

import logging
import threading

from ingest.worker import IngestWorker
from smartsite.db import connect
from smartsite.db.migrate import storage_path
from smartsite.db.policies import prune
from smartsite.settings import MqttEndpoint, Settings

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0


def serve(
    database_url: str,
    endpoint: MqttEndpoint,
    settings: Settings,
    stop: threading.Event,
    workers: int = 1,
) -> None:
    """Blocking: ``workers`` ingest workers on one shared subscription, until ``stop``."""
    group = settings.ingest_shared_group or ("ingest" if workers > 1 else None)
    started = [
        IngestWorker(
            database_url,
            endpoint,
            settings,
            name=f"{settings.ingest_name}-{i + 1}",
            shared_group=group,
        ).start()
        for i in range(workers)
    ]
    try:
        while not stop.wait(PRUNE_EVERY_S):
            try:
                with connect(database_url) as conn:
                    log.info("pruned %s", prune(conn, storage_path(conn), settings))
            except Exception:
                log.exception("prune failed; will retry")
    finally:
        for w in started:
            w.stop()
