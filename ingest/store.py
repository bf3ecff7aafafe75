"""The store process of an ingest worker: decode, validate and write batches.

It runs in its own process so that decoding and database work do not compete for the GIL
with paho's network loop, which alone costs about as much per message as everything else.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from ingest.decode import Accepted, DeadLetter, Reason, dead, decode
from ingest.writer import BatchResult, Directory, write_batch
from smartsite.db import CONNECTION_ERRORS
from smartsite.settings import Settings

log = logging.getLogger(__name__)

DIRECTORY_TTL_S = 60.0


@dataclass
class Outcome:
    """What one batch became; sent back to the receiver, which acknowledges the batch."""

    kinds: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    dead: Counter[str] = field(default_factory=Counter)


class Store:
    """Decodes raw messages and writes them, retrying while the database is away."""

    def __init__(self, database_url: str, settings: Settings, name: str) -> None:
        self.database_url = database_url
        self.settings = settings
        self.name = name
        self.directory = Directory()
        self._conn: psycopg.Connection | None = None
        self._directory_loaded = 0.0

    def write(self, raw: list[tuple[str, bytes]]) -> Outcome:
        out = Outcome()
        items: list[Accepted | DeadLetter] = []
        for topic, payload in raw:
            try:
                item = decode(self.settings.topic_prefix, topic, payload)
            except Exception as exc:  # never die on input
                log.exception("%s: decoding %s failed", self.name, topic)
                item = dead(topic, Reason.SCHEMA_MISMATCH, f"could not be decoded: {exc}", payload)
            if item is None:
                continue
            out.kinds[item.topic.kind.value if isinstance(item, Accepted) else "invalid"] += 1
            items.append(item)
        if items:
            res = self._write_with_retry(items)
            out.written.update(res.written)
            out.duplicates = res.duplicates
            for d in res.dead:
                out.dead[d.reason_code.value] += 1
                log.warning("%s: dead-lettered %s: %s", self.name, d.topic, d.reason)
        return out

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(
                self.database_url, application_name=f"smartsite-{self.name}"
            )
        if time.monotonic() - self._directory_loaded > DIRECTORY_TTL_S:
            self.directory.devices.clear()  # re-read registrations, deactivations, moves
            self._directory_loaded = time.monotonic()
        return self._conn

    def _write_with_retry(self, items: list[Accepted | DeadLetter]) -> BatchResult:
        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: database unavailable (%s); retrying", self.name, exc)

        # Forever: the receiver acknowledges nothing meanwhile, so the broker holds the rest.
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(CONNECTION_ERRORS),
            before_sleep=note,
            reraise=True,
        ):
            with attempt:
                conn = self._db()
                try:
                    return write_batch(conn, self.directory, items)
                except CONNECTION_ERRORS:
                    raise
                except psycopg.Error as exc:
                    log.warning("%s: batch rejected (%s); writing one by one", self.name, exc)
                    return self._write_one_by_one(conn, items)
        raise AssertionError("unreachable")

    def _write_one_by_one(
        self, conn: psycopg.Connection, items: list[Accepted | DeadLetter]
    ) -> BatchResult:
        """Slow path after the database rejected a batch: isolate the bad messages."""
        total = BatchResult()
        for item in items:
            try:
                res = write_batch(conn, self.directory, [item])
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as exc:
                assert isinstance(item, Accepted)
                reason = f"the database refused it: {exc.diag.message_primary or exc}"
                bad = dead(
                    item.raw_topic, Reason.REJECTED_BY_DATABASE, reason, item.raw, item.topic
                )
                res = write_batch(conn, self.directory, [bad])
            total.written.update(res.written)
            total.duplicates += res.duplicates
            total.dead.extend(res.dead)
        return total

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def store_main(
    inbox: Connection,
    outbox: Connection,
    database_url: str,
    settings: Settings,
    name: str,
    log_level: int,
) -> None:
    """Entry point of the store process: batches in, outcomes out, in order; None stops it."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A batch allocates thousands of short-lived objects per message; with the default
    # thresholds the cyclic GC rescans them (and every imported module) so often that it
    # costs a third of decoding. Freeze what is loaded and collect young objects less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    store = Store(database_url, settings, name)
    outbox.send("ready")
    try:
        while (batch := inbox.recv()) is not None:
            outbox.send(store.write(batch))
    except (EOFError, KeyboardInterrupt):
        pass  # the receiver went away: nothing was acknowledged, the broker redelivers
    finally:
        store.close()
