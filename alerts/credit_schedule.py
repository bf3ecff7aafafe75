"""Scheduled credit recompute: scores change with time alone (records fade with age, blacklist
entries end), so the hub recomputes every enterprise and person every
``SMARTSITE_CREDIT_RECOMPUTE_HOURS`` (and once at start), not only when a record is added."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import psycopg

from alerts.credit import Policy, recompute
from smartsite.db import connect
from smartsite.settings import Settings

log = logging.getLogger(__name__)


class CreditRecomputer:
    """A daemon thread recomputing all credit scores at a fixed interval."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.database_url = database_url
        self.settings = settings
        self.interval = settings.credit_recompute_hours * 3600.0
        self.rounds = 0
        self.last_run: datetime | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="credit-recompute", daemon=True)

    def start(self) -> CreditRecomputer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def round(self) -> int:
        """Recompute every subject now; returns how many were stored."""
        policy = Policy.from_settings(self.settings)
        with connect(self.database_url, autocommit=True) as conn:
            scores = recompute(conn, now=datetime.now(UTC), policy=policy)
        self.rounds += 1
        self.last_run = datetime.now(UTC)
        return len(scores)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.interval
            try:
                n = self.round()
                log.info("credit: recomputed %d scores", n)
            except psycopg.OperationalError as exc:
                log.warning("credit recompute: database unavailable (%s); retrying", exc)
                wait = min(self.interval, 30.0)
            except Exception:
                log.exception("credit recompute failed; next round")
            self._stop.wait(wait)
