"""The disk outbox between the judge and MQTT: SQLite in WAL mode.

Why a disk outbox: QoS 1 alone loses messages on a process restart (paho keeps them in
memory) and a site uplink drops for hours. Every message the agent produces is committed here
first; the publisher takes rows out in (priority, id) order, publishes them with QoS 1 and
deletes a row only after the broker's PUBACK for it (paho ``on_publish`` with the mid).

* **Durability.** WAL with ``synchronous=FULL`` (the default): every enqueue fsyncs the WAL, so
  a committed alert survives a kill -9 *and* a power cut. ``NORMAL`` is offered for gateways
  on flash that wears or where the last second of telemetry does not matter: in WAL mode it
  survives a process crash but a power cut may roll back the last commits (never corrupts).
  Deleting acknowledged rows is batched (one transaction per ~50 ms of PUBACKs); a crash
  between a PUBACK and that delete republishes the row after restart — at-least-once, and the
  hub dedupes by the message id, which never changes.
* **Priority lanes.** ``priority`` 0 is the most urgent (alerts, attendance and their
  evidence), then status, detection events, telemetry: :func:`priority_of` maps a message
  kind to its lane, the one place that decides it (the agent puts an evidence JPEG in the
  lane of the message it belongs to, committed just before it). Within a lane rows go FIFO
  (rowid).
  After a reconnect the backlog drains in order while a live alert still goes first: each
  refill of the in-flight window takes the best rows at that moment.
* **Bound.** Stored bytes (payload + topic + a fixed per-row overhead) never exceed
  ``max_bytes``. To make room, the oldest rows of the lowest-priority lane go first, and a row
  only ever evicts rows of its own or lower priority: telemetry never pushes out an alert or
  attendance; when only more important rows are left, the new row itself is dropped. Drops
  are counted per lane and kept across restarts. Freed pages are reused (and given back with
  incremental vacuum), so the file stays near the bound.
* **Idempotent.** A row may carry a key (the message id; ``evidence:<id>`` for evidence);
  enqueuing the same key twice stores it once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from smartsite.protocol.messages import encode
from smartsite.protocol.topics import Kind

log = logging.getLogger(__name__)

PRIORITY_ALERT = 0
"""Alerts, attendance and their evidence: never dropped before anything less important."""
PRIORITY_STATUS = 1
"""Gateway and camera status."""
PRIORITY_EVENT = 2
"""Routine detections: track events and their snapshots."""
PRIORITY_TELEMETRY = 3
"""Sensor readings and gateway health metrics."""

LANE_NAMES = {
    PRIORITY_ALERT: "alert",
    PRIORITY_STATUS: "status",
    PRIORITY_EVENT: "event",
    PRIORITY_TELEMETRY: "telemetry",
}

ROW_OVERHEAD = 64
"""Bytes counted per row on top of payload and topic (rowid, priority, key, b-tree cell)."""

DEFAULT_PRIORITY: dict[Kind, int] = {
    Kind.ALERT: PRIORITY_ALERT,
    Kind.ATTENDANCE: PRIORITY_ALERT,
    Kind.STATUS: PRIORITY_STATUS,
    Kind.EVENT: PRIORITY_EVENT,
    Kind.EVIDENCE: PRIORITY_EVENT,
    Kind.TELEMETRY: PRIORITY_TELEMETRY,
}


def priority_of(kind: Kind) -> int:
    """The lane a message kind goes in by default."""
    return DEFAULT_PRIORITY.get(kind, PRIORITY_TELEMETRY)


@dataclass(frozen=True, slots=True)
class Row:
    rowid: int
    priority: int
    topic: str
    payload: bytes
    retain: bool
    key: str | None


@dataclass(frozen=True, slots=True)
class Depth:
    rows: int
    bytes: int
    per_lane: dict[int, int]
    dropped: dict[int, int]


SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    rowid    INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    retain   INTEGER NOT NULL DEFAULT 0,
    key      TEXT,
    size     INTEGER NOT NULL,
    created  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (priority, rowid);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_key ON outbox (key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    """A bounded, prioritised, crash-safe queue of MQTT publishes in one SQLite file.

    Thread-safe: the judge and sensors enqueue from their threads, the publisher takes and
    acknowledges from its own (one connection, one lock; SQLite serialises writers anyway).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 256 * 1024 * 1024,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes on a new file
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        self._rows, self._bytes = int(row[0]), int(row[1])
        self._dropped = {p: self._meta(f"dropped_{p}") for p in LANE_NAMES}
        self._freed_since_vacuum = 0
        self.on_new_rows: list[Callable[[], None]] = []  # called after a commit (wake-ups)

    # --- meta counters (kept across restarts) ---------------------------------------------

    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, name: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def next_seq(self, n: int = 1) -> int:
        """Reserve ``n`` per-device sequence numbers; returns the first. Kept on disk, so the
        sequence continues across restarts (the hub's gap detection)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                first = self._meta("seq") + 1
                self._set_meta("seq", first + n - 1)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return first

    # --- enqueue ----------------------------------------------------------------------------

    def put(
        self,
        topic: str,
        payload: bytes | BaseModel,
        priority: int,
        *,
        key: str | None = None,
        retain: bool = False,
    ) -> bool:
        """Commit one publish; False when it was dropped (no room) or was already queued."""
        return self.put_many([(topic, payload, priority, key, retain)]) == 1

    def put_many(
        self, items: Iterable[tuple[str, bytes | BaseModel, int, str | None, bool]]
    ) -> int:
        """Commit several publishes in one transaction (one fsync); returns how many stored.

        A payload given as a protocol message (a model with ``seq``) gets the gateway's next
        sequence number stamped in that same transaction and is encoded then: the sequence
        is contiguous across restarts, and a gap at the hub means a message really was lost
        (dropped by the size bound)."""
        stored = 0
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._meta("seq")
                for topic, item, priority, key, retain in items:
                    if isinstance(item, BaseModel):
                        key = key or str(getattr(item, "id", "")) or None
                        if (
                            key is not None
                            and self._db.execute(
                                "SELECT 1 FROM outbox WHERE key = ?", (key,)
                            ).fetchone()
                        ):
                            continue
                        if "seq" in type(item).model_fields:
                            seq += 1
                            item = item.model_copy(update={"seq": seq})
                        payload = encode(item)
                    else:
                        payload = item
                    size = len(payload) + len(topic.encode()) + ROW_OVERHEAD
                    if size > self.max_bytes:
                        self._count_drop(priority, 1)
                        log.error("outbox: a %d-byte message cannot fit in the outbox", size)
                        continue
                    if (
                        key is not None
                        and self._db.execute(
                            "SELECT 1 FROM outbox WHERE key = ?", (key,)
                        ).fetchone()
                    ):
                        continue  # already queued: idempotent
                    if self._bytes + size > self.max_bytes and not self._make_room(size, priority):
                        self._count_drop(priority, 1)
                        continue
                    self._db.execute(
                        "INSERT INTO outbox (priority, topic, payload, retain, key, size, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (priority, topic, payload, int(retain), key, size, now),
                    )
                    self._rows += 1
                    self._bytes += size
                    stored += 1
                if seq != self._meta("seq"):
                    self._set_meta("seq", seq)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_counts()
                raise
        if stored:
            for callback in self.on_new_rows:
                callback()
        return stored

    def _count_drop(self, priority: int, n: int) -> None:
        self._dropped[priority] = self._dropped.get(priority, 0) + n
        self._set_meta(f"dropped_{priority}", self._dropped[priority])

    def _make_room(self, size: int, priority: int) -> bool:
        """Evict oldest rows of the lowest lanes not more important than ``priority`` until
        ``size`` more bytes fit. Rows being published may go too (their PUBACK then finds
        nothing to delete). False, evicting nothing, when that cannot make enough room."""
        need = self._bytes + size - self.max_bytes
        evictable = self._db.execute(
            "SELECT coalesce(sum(size), 0) FROM outbox WHERE priority >= ?", (priority,)
        ).fetchone()[0]
        if evictable < need:
            return False
        lanes = [
            r[0]
            for r in self._db.execute(
                "SELECT DISTINCT priority FROM outbox WHERE priority >= ? ORDER BY priority DESC",
                (priority,),
            )
        ]
        for lane in lanes:
            victims: list[int] = []
            freed = 0
            for rowid, sz in self._db.execute(
                "SELECT rowid, size FROM outbox WHERE priority = ? ORDER BY rowid", (lane,)
            ):
                if freed >= need:
                    break
                victims.append(rowid)
                freed += sz
            self._db.executemany("DELETE FROM outbox WHERE rowid = ?", [(v,) for v in victims])
            self._rows -= len(victims)
            self._bytes -= freed
            self._freed_since_vacuum += freed
            self._count_drop(lane, len(victims))
            log.warning(
                "outbox full (%d bytes): dropped the %d oldest %s rows",
                self.max_bytes,
                len(victims),
                LANE_NAMES.get(lane, str(lane)),
            )
            need -= freed
            if need <= 0:
                return True
        return need <= 0

    # --- publish side -------------------------------------------------------------------------

    def peek(self, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[Row]:
        """The next ``limit`` rows in (priority, FIFO) order, skipping ``exclude`` (in flight)."""
        with self._lock:
            cur = self._db.execute(
                "SELECT rowid, priority, topic, payload, retain, key FROM outbox "
                "ORDER BY priority, rowid LIMIT ?",
                (limit + len(exclude),),
            )
            rows = [
                Row(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5])
                for r in cur
                if r[0] not in exclude
            ]
        return rows[:limit]

    def ack(self, rowids: Iterable[int]) -> int:
        """Delete acknowledged rows (one transaction); returns how many were still there."""
        ids = [(r,) for r in rowids]
        if not ids:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                freed = 0
                for (rowid,) in ids:
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE rowid = ? RETURNING size", (rowid,)
                    ).fetchone()
                    if row:
                        freed += row[0]
                deleted = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_counts()
                raise
            self._rows -= deleted
            self._bytes -= freed
            self._freed_since_vacuum += freed
            if self._freed_since_vacuum > 4 * 1024 * 1024:
                self._db.execute("PRAGMA incremental_vacuum")
                self._freed_since_vacuum = 0
        return deleted

    def _reload_counts(self) -> None:
        row = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        self._rows, self._bytes = int(row[0]), int(row[1])

    def depth(self) -> Depth:
        with self._lock:
            lanes = dict(
                self._db.execute("SELECT priority, count(*) FROM outbox GROUP BY priority")
            )
            return Depth(self._rows, self._bytes, lanes, dict(self._dropped))

    def __len__(self) -> int:
        return self._rows

    def file_bytes(self) -> int:
        """The database file and its WAL on disk."""
        total = 0
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()


class OutboxPublisher:
    """Moves rows from the outbox to the broker: QoS 1, a window of publishes in flight,
    each row deleted once its PUBACK came back.

    paho keeps unacknowledged QoS 1 publishes of this client object in memory and resends
    them (same mid, DUP set) after a reconnect, so in-flight rows stay in flight across a
    reconnect; a new process simply publishes the rows again (same message ids).

    ``on_publish`` runs on paho's network thread while paho holds its own message lock, so
    it only records the mid; this publisher's thread maps mids to rows and deletes them
    (a lock taken in both places would deadlock against ``publish()``).
    """

    def __init__(
        self,
        outbox: Outbox,
        client: object,
        *,
        window: int = 100,
        ack_batch_s: float = 0.05,
        stuck_after_s: float = 300.0,
    ) -> None:
        import collections

        self.outbox = outbox
        self.client = client
        self.window = window
        self.ack_batch_s = ack_batch_s
        self.stuck_after_s = stuck_after_s
        self.connected = threading.Event()
        self.published = 0  # PUBACKed rows (this process)
        self.rejected = 0  # PUBACKs with a failure reason (e.g. 0x87 not authorized)
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (rowid, sent at)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client.on_publish = self._on_publish  # type: ignore[attr-defined]
        outbox.on_new_rows.append(self._wake.set)

    # paho callback (network thread)
    def _on_publish(
        self, _c: object, _u: object, mid: int, reason: object = None, _p: object = None
    ) -> None:
        self._acks.append((mid, bool(getattr(reason, "is_failure", False))))
        self._wake.set()

    def set_connected(self, connected: bool) -> None:
        """Called from the MQTT client's on_connect / on_disconnect."""
        if connected:
            self.connected.set()
            self._wake.set()
        else:
            self.connected.clear()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def start(self) -> OutboxPublisher:
        self._thread = threading.Thread(target=self._run, name="outbox-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def wait_empty(self, timeout: float) -> bool:
        """Wait until every row is acknowledged (tests, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while len(self.outbox) or self._inflight or self._acks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _process_acks(self) -> None:
        done: list[int] = []
        while self._acks:
            mid, failed = self._acks.popleft()
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue
            if failed:
                self.rejected += 1
                log.error("the broker refused a publish (row %d): dropped", entry[0])
            done.append(entry[0])
        if done:
            self.outbox.ack(done)
            self.published += len(done)

    def _fill(self) -> None:
        import paho.mqtt.client as mqtt

        client = self.client
        free = self.window - len(self._inflight)
        if free <= 0 or not self.connected.is_set():
            return
        busy = {rowid for rowid, _t in self._inflight.values()}
        for row in self.outbox.peek(free, busy):
            info = client.publish(row.topic, row.payload, qos=1, retain=row.retain)  # type: ignore[attr-defined]
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish of row %d failed (%s); retrying", row.rowid, info.rc)
                break
            # NO_CONN: paho queued it and sends it on reconnect, PUBACK comes with this mid
            self._inflight[info.mid] = (row.rowid, time.monotonic())
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                break

    def _unstick(self) -> None:
        """A row in flight far longer than any PUBACK takes (connected all along) goes out
        again: paho lost it somehow. The hub dedupes the possible duplicate."""
        if not self.connected.is_set():
            now = time.monotonic()
            self._inflight = {m: (r, now) for m, (r, _t) in self._inflight.items()}
            return
        limit = time.monotonic() - self.stuck_after_s
        for mid in [m for m, (_r, t) in self._inflight.items() if t < limit]:
            log.warning("row %d unacknowledged for %ss: publishing again", *self._inflight[mid])
            del self._inflight[mid]

    def _run(self) -> None:
        last_unstick = time.monotonic()
        while not self._stop.is_set():
            try:
                self._process_acks()
                self._fill()
                if time.monotonic() - last_unstick > 5:
                    self._unstick()
                    last_unstick = time.monotonic()
            except Exception:
                log.exception("outbox publisher")
                time.sleep(1)
            # a PUBACK or a new row wakes it; acks are batched over ack_batch_s
            self._wake.wait(0.5)
            if self._inflight and not self._stop.is_set():
                time.sleep(self.ack_batch_s)
            self._wake.clear()
        self._process_acks()
