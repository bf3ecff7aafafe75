"""The alert engine: MQTT telemetry and edge alerts in, deduplicated alerts out.

One process, one thread that owns the state and the database connection, beside paho's
network thread. Like ingest it holds an MQTT persistent session (its own client id, a plain
subscription: one engine per hub) and acknowledges a message only after the transaction
that judged it committed, so a crash loses nothing: the broker redelivers, and readings not
newer than a target's last judged one are ignored, so nothing counts twice.

The state of every target (device, rule, target) lives in memory and in ``alert_state``; a
batch's changes are staged, written with the alerts they open or clear, and only then made
current, so a failed transaction leaves memory as the database has it. The partial unique
index on active alerts is the last word on dedupe: an insert that would duplicate adopts the
alert that is already there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import psycopg
from psycopg.types.json import Jsonb
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
)

from alerts import correlate as cr
from alerts import evaluate as ev
from alerts.defaults import WORKER_CERTIFICATE_RULE
from alerts.lifecycle import ENGINE_ACTOR, Status, record
from alerts.rule_store import load_rules, rules_version, seed_defaults
from alerts.rules import Device, Level, RuleBook, RuleKind, RuleRow
from ingest.decode import Accepted, decode
from smartsite.db import CONNECTION_ERRORS, connect
from smartsite.mqtt import Delivery, ack, connect_persistent, make_client, ready_at_suback
from smartsite.protocol.messages import EdgeAlert, Telemetry
from smartsite.protocol.topics import Kind
from smartsite.settings import MqttEndpoint, Settings

log = logging.getLogger(__name__)

DEVICES_REFRESH_S = 60.0
UNKNOWN_RELOAD_S = 1.0  # an unknown device reloads the registry at most this often
StateKey = tuple[str, str, str]  # device, rule key, target


@dataclass(frozen=True, slots=True)
class _DeviceInfo:
    device: Device
    gateway_id: str | None


@dataclass(slots=True)
class Entry:
    """A target's state, its active alert, and what of it the database has."""

    state: ev.TargetState
    alert_id: uuid.UUID | None = None
    saved_sig: str | None = None  # state_to_json without last_time/last_value, as saved
    saved_time: datetime | None = None
    touched: bool = False  # observed in this batch (the alert row's last_seen moves)


@dataclass
class EngineStats:
    received: int = 0
    batches: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)


def _sig(s: ev.TargetState) -> str:
    return json.dumps(ev.state_to_json(replace(s, last_time=None, last_value=None)))


class AlertEngine:
    """Consume, evaluate, persist, acknowledge; a timer for what is due without messages."""

    def __init__(
        self,
        database_url: str,
        endpoint: MqttEndpoint,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.database_url = database_url
        self.endpoint = endpoint
        self.settings = settings
        self.tz = ZoneInfo(settings.alerts_timezone)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.stats = EngineStats()
        self.connected = threading.Event()
        self.client_id = f"smartsite-{settings.alerts_name}"
        self._cond = threading.Condition()
        self._buffer: list[Delivery] = []
        self._buffer_since = 0.0
        self._generation = 0
        self._connected_at: float | None = None
        self._accepting = True
        self._stopping = False
        self._crash_after_commit = False  # tests: commit, then die before acknowledging
        self._conn: psycopg.Connection | None = None
        self.entries: dict[StateKey, Entry] = {}
        self.book = RuleBook()
        self._rules_version = -1
        self.devices: dict[str, _DeviceInfo] = {}
        self._devices_loaded = 0.0
        self._unknown_seen = False
        self._matches: dict[tuple[str, str], list[RuleRow]] = {}
        self._client = make_client(endpoint, self.client_id, persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = ready_at_suback(self.connected, "alert engine")
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> AlertEngine:
        """Load rules, devices and state; seed default rules; connect and consume."""
        conn = self._db()
        with conn.transaction():
            added = seed_defaults(conn)
        if added:
            log.info("seeded %d default alert rules", len(added))
        self._refresh(force=True)
        self._load_state()
        connect_persistent(
            self._client, self.endpoint, receive_maximum=self.settings.alerts_receive_maximum
        )
        self._client.loop_start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: judge, commit and acknowledge what is buffered, then disconnect."""
        with self._cond:
            self._accepting = False  # later deliveries stay unacknowledged: redelivered
            self._stopping = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()

    def wait_connected(self, timeout: float = 30.0) -> None:
        if not self.connected.wait(timeout):
            raise TimeoutError(f"alert engine: no broker connection after {timeout}s")

    def run_forever(self, stop: threading.Event) -> None:
        """Blocking: start, run until ``stop`` is set, stop."""
        self.start()
        try:
            while not stop.wait(1.0):
                if not self._thread.is_alive():
                    raise RuntimeError("the alert engine thread died; see the log")
        finally:
            self.stop()

    # --- MQTT callbacks (paho's thread): hand over and return ----------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("alert engine: broker refused the connection: %s", reason)
            return
        with self._cond:
            self._generation += 1  # acks of an earlier connection must not go out on this one
            self._connected_at = time.monotonic()
        prefix = self.settings.topic_prefix
        client.subscribe(
            [(f"{prefix}/+/+/{Kind.TELEMETRY.value}", 1), (f"{prefix}/+/+/{Kind.ALERT.value}", 1)]
        )
        log.info("alert engine connected (session present: %s)", flags.session_present)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        self.connected.clear()
        with self._cond:
            self._connected_at = None
        if not self._stopping:
            log.warning("alert engine: broker connection lost (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            if not self._accepting:
                return
            first = not self._buffer
            if first:
                self._buffer_since = time.monotonic()
            self._buffer.append(
                Delivery(self._generation, msg.mid, msg.qos, msg.topic, msg.payload)
            )
            # The first message starts the batch clock: wake the engine thread so that it
            # waits alerts_batch_seconds from now, not until the next tick.
            if first or len(self._buffer) >= self.settings.alerts_batch_messages:
                self._cond.notify_all()

    # --- the engine thread -------------------------------------------------------------------

    def _take(self, next_tick: float) -> list[Delivery] | None:
        """The next batch (possibly empty when a tick is due); None: stopped and drained."""
        s = self.settings
        with self._cond:
            while True:
                now = time.monotonic()
                if self._buffer and (
                    len(self._buffer) >= s.alerts_batch_messages
                    or now >= self._buffer_since + s.alerts_batch_seconds
                    or self._stopping
                ):
                    batch, self._buffer = self._buffer, []
                    return batch
                if self._stopping:
                    return None
                if now >= next_tick:
                    return []
                due = next_tick
                if self._buffer:
                    due = min(due, self._buffer_since + s.alerts_batch_seconds)
                self._cond.wait(max(0.0, due - now))

    def _run(self) -> None:
        next_tick = time.monotonic()
        next_refresh = time.monotonic() + self.settings.alerts_rules_refresh_seconds
        while True:
            batch = self._take(next_tick)
            if batch is None:
                return
            if time.monotonic() >= next_refresh:
                self._retrying(lambda: self._refresh(force=False))
                next_refresh = time.monotonic() + self.settings.alerts_rules_refresh_seconds
            if batch:
                if not self._retrying(lambda b=batch: self._process_isolating(b)):
                    return
                if self._crash_after_commit:
                    log.warning("alert engine: crashing after commit (test hook)")
                    return
                self._ack(batch)
            if time.monotonic() >= next_tick:
                try:
                    self._retrying(self._tick)
                except psycopg.Error:
                    log.exception("alert engine: the timer's transaction failed; next tick")
                next_tick = time.monotonic() + self.settings.alerts_tick_seconds

    def _process_isolating(self, batch: list[Delivery]) -> None:
        """Judge a batch in one transaction; if the database refuses it for another reason
        than being away (a bug meeting odd data), judge its messages one by one and skip the
        ones it still refuses, so that one message cannot stop the engine."""
        try:
            self._process(batch)
            return
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error:
            log.exception("alert engine: a batch of %d failed; judging one by one", len(batch))
        for d in batch:
            try:
                self._process([d])
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error:
                log.exception("alert engine: skipped the message on %s", d.topic)
                self.stats.ignored["refused_by_database"] += 1

    def _retrying(self, work: Callable[[], None]) -> bool:
        """Run ``work`` until the database lets it through; False: stopping meanwhile."""

        def reconnect(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("alert engine: database unavailable (%s); retrying", exc)
            if self._conn is not None:
                self._conn.close()
            self._conn = None

        try:
            Retrying(
                retry=retry_if_exception_type(CONNECTION_ERRORS),
                wait=wait_exponential(multiplier=0.2, max=10),
                # while stopping, give up once the waits have grown past a few seconds
                stop=lambda s: self._stopping and s.attempt_number > 5,
                before_sleep=reconnect,
            )(work)
        except RetryError:
            return False
        return True

    def _ack(self, batch: list[Delivery]) -> None:
        with self._cond:
            generation = self._generation
        ack(self._client, batch, generation)

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.database_url)
        return self._conn

    # --- rules, devices, state --------------------------------------------------------------

    def _refresh(self, *, force: bool) -> None:
        """Reload rules when any changed (the history grows) and devices now and then."""
        conn = self._db()
        reload_devices = (
            force
            or self._unknown_seen
            or time.monotonic() - self._devices_loaded >= DEVICES_REFRESH_S
        )
        with conn.transaction():
            version = rules_version(conn)
            rows = (
                conn.execute(
                    "SELECT id, project_id, kind, rated, gateway_id FROM devices WHERE active"
                ).fetchall()
                if reload_devices
                else None
            )
            book = load_rules(conn) if force or version != self._rules_version else None
        if rows is not None:
            self.devices = {
                r[0]: _DeviceInfo(Device(r[0], r[1], r[2], r[3] or {}), r[4]) for r in rows
            }
            self._devices_loaded = time.monotonic()
            self._unknown_seen = False
        if book is not None:
            self._rules_version = version
            log.info("alert engine: %d rule rows loaded (version %d)", len(book.rows), version)
        if rows is not None or book is not None:
            self.book = RuleBook((book or self.book).rows)  # fresh per-device caches
            self._matches.clear()

    def _load_state(self) -> None:
        conn = self._db()
        with conn.transaction():
            rows = conn.execute(
                "SELECT s.device_id, s.rule, s.target, s.alert_id, s.state, a.cleared_at "
                "FROM alert_state s LEFT JOIN alerts a ON a.id = s.alert_id"
            ).fetchall()
        self.entries.clear()
        for dev, rule, target, alert_id, data, cleared_at in rows:
            state = ev.state_from_json(data)
            if state.active and (alert_id is None or cleared_at is not None):
                # the alert was deleted or cleared behind the engine's back: start afresh
                state = ev.TargetState(last_time=state.last_time, samples=state.samples)
                alert_id = None
            self.entries[(dev, rule, target)] = Entry(state, alert_id, _sig(state), state.last_time)
        log.info("alert engine: %d target states loaded", len(self.entries))

    def _rules_for_metric(self, info: _DeviceInfo, metric: str) -> list[RuleRow]:
        key = (info.device.id, metric)
        got = self._matches.get(key)
        if got is None:
            got = self._matches[key] = [
                r
                for r in self.book.for_device(info.device).values()
                if r.spec.kind in (RuleKind.THRESHOLD, RuleKind.RATE) and r.spec.matches(metric)
            ]
        return got

    # --- a batch -----------------------------------------------------------------------------

    def _process(self, batch: list[Delivery]) -> None:
        now = self.clock()
        tx = _Tx(self, now)
        for d in batch:
            try:
                item = decode(self.settings.topic_prefix, d.topic, d.payload)
            except Exception:  # never die on input
                log.exception("alert engine: could not decode %s", d.topic)
                continue
            if not isinstance(item, Accepted):
                self.stats.ignored["invalid"] += 1  # ingest dead-letters it with the reason
                continue
            try:
                if isinstance(item.message, Telemetry):
                    self._telemetry(tx, item, now)
                elif isinstance(item.message, EdgeAlert):
                    self._edge_alert(tx, item, now)
            except Exception:
                log.exception("alert engine: judging %s failed; skipped", d.topic)
                self.stats.ignored["error"] += 1
        tx.commit()
        self.stats.received += len(batch)
        self.stats.batches += 1

    def _device(self, device_id: str, project: str, via: str | None) -> _DeviceInfo | None:
        info = self.devices.get(device_id)
        if info is None and time.monotonic() - self._devices_loaded >= UNKNOWN_RELOAD_S:
            self._unknown_seen = True  # registered since the last load? look once more
            self._refresh(force=False)
            info = self.devices.get(device_id)
        if info is None:
            self.stats.ignored["unknown_device"] += 1
            return None
        if info.device.project_id != project or (via is not None and info.gateway_id != via):
            self.stats.ignored["wrong_project_or_gateway"] += 1
            return None
        return info

    def _telemetry(self, tx: _Tx, item: Accepted, now: datetime) -> None:
        m = item.message
        assert isinstance(m, Telemetry)
        project, sender = item.topic.project, item.topic.device
        heard: dict[str, datetime] = {}
        for r in m.readings:
            via = r.source if r.source and r.source != sender else None
            info = self._device(r.source or sender, project, sender if via else None)
            if info is None:
                continue
            at = min(r.time or m.ts, now)  # a device clock ahead of ours is read as now
            dev = info.device.id
            heard[dev] = max(heard.get(dev, at), at)
            for row in self._rules_for_metric(info, r.metric):
                key = (dev, row.key, r.metric)
                entry = tx.entry(key)
                out = ev.observe_value(
                    row.spec, entry.state, r.value, at, info.device.rated, self.tz
                )
                tx.apply(key, entry, out, row, info.device, observed=True)
        for dev, at in heard.items():
            info = self.devices[dev]
            for row in self.book.for_device(info.device).values():
                if row.spec.kind is RuleKind.SILENCE:
                    key = (dev, row.key, "")
                    entry = tx.entry(key)
                    out = ev.observe_heard(row.spec, entry.state, at)
                    tx.apply(key, entry, out, row, info.device, observed=False)

    def _edge_alert(self, tx: _Tx, item: Accepted, now: datetime) -> None:
        m = item.message
        assert isinstance(m, EdgeAlert)
        info = self._device(item.topic.device, item.topic.project, None)
        if info is None:
            return
        row = self.book.for_device(info.device).get(m.rule.value)
        if row is None or row.spec.kind is not RuleKind.EDGE:
            self.stats.ignored["no_edge_rule"] += 1
            return
        target = "/".join(p for p in (m.camera, m.zone) if p)
        key = (info.device.id, row.key, target)
        entry = tx.entry(key)
        out = ev.observe_edge(
            row.spec, entry.state, Level(m.severity.value), min(m.ts, now), m.detail
        )
        tx.apply(key, entry, out, row, info.device, observed=True, edge=m)
        try:
            self._certificate(tx, info, m, now)
        except CONNECTION_ERRORS:
            raise
        except Exception:  # the edge alert itself is staged already; only this one is lost
            log.exception("alert engine: the certificate check of %s failed", item.topic)

    def _certificate(self, tx: _Tx, info: _DeviceInfo, m: EdgeAlert, now: datetime) -> None:
        """A recognised worker in a zone needing a certificate they lack or hold expired is
        its own alert (one per worker and zone), opened and cleared like an edge alert."""
        if m.event_id is None or m.zone is None:
            return
        row = self.book.for_device(info.device).get(WORKER_CERTIFICATE_RULE)
        if row is None or row.spec.kind is not RuleKind.EDGE:
            return  # disabled or removed by an administrator
        at = min(m.ts, now)
        conn = self._db()
        # its own short transaction: the batch's is opened only by the commit
        with conn.transaction():
            found = cr.worker_missing_certificates(
                conn, info.device.project_id, m.event_id, m.zone, at.astimezone(self.tz).date()
            )
        if found is None or not found[1]:
            return
        worker, missing = found
        detail = f"worker {worker} in zone {m.zone} lacks a valid {', '.join(missing)}"
        key = (info.device.id, row.key, f"{worker}/{m.zone}")
        entry = tx.entry(key)
        out = ev.observe_edge(row.spec, entry.state, Level.ALARM, at, detail)
        edge = m.model_copy(update={"detail": detail[:500]})
        tx.apply(key, entry, out, row, info.device, observed=True, edge=edge)

    # --- the timer ---------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock()
        with self._cond:
            connected_at = self._connected_at
        in_grace = (
            connected_at is None
            or time.monotonic() - connected_at < self.settings.alerts_startup_grace_seconds
        )
        active = [e.alert_id for e in self.entries.values() if e.alert_id is not None]
        statuses: dict[uuid.UUID, str] = {}
        if active:
            conn = self._db()
            with conn.transaction():
                statuses = dict(
                    conn.execute(
                        "SELECT id, status FROM alerts WHERE id = ANY(%s)", (active,)
                    ).fetchall()
                )
        tx = _Tx(self, now)
        for key, entry in list(self.entries.items()):
            dev_id, rule_key, target = key
            info = self.devices.get(dev_id)
            row = self.book.for_device(info.device).get(rule_key) if info else None
            gone = row is None or (
                row.spec.kind in (RuleKind.THRESHOLD, RuleKind.RATE)
                and not row.spec.matches(target)
            )
            if gone:
                if entry.state.active:
                    out = ev.retire(entry.state, now, "rule removed or disabled for this device")
                    tx.apply(key, tx.entry(key), out, None, info.device if info else None)
                continue
            if row.spec.kind is RuleKind.SILENCE and in_grace and not entry.state.active:
                continue  # let the queued messages in before calling anyone silent
            status = statuses.get(entry.alert_id) if entry.alert_id else None
            out = ev.tick(row.spec, entry.state, now, status)
            if out.state is not entry.state or out.actions:
                tx.apply(key, tx.entry(key), out, row, info.device if info else None)
        tx.commit()


@dataclass(slots=True)
class _Staged:
    """An action of this batch and the alert it concerns (an id planned for an open)."""

    key: StateKey
    entry: Entry
    action: ev.Action
    alert_id: uuid.UUID | None
    row: RuleRow | None
    device: Device | None
    edge: EdgeAlert | None


class _Tx:
    """One batch's staged changes: target states, alert rows, transitions, outbox."""

    def __init__(self, engine: AlertEngine, now: datetime) -> None:
        self.e = engine
        self.now = now
        self.staged: dict[StateKey, Entry] = {}
        self.actions: list[_Staged] = []

    def entry(self, key: StateKey) -> Entry:
        got = self.staged.get(key)
        if got is None:
            cur = self.e.entries.get(key)
            got = (
                Entry(cur.state, cur.alert_id, cur.saved_sig, cur.saved_time)
                if cur
                else Entry(ev.TargetState())
            )
            self.staged[key] = got
        return got

    def apply(
        self,
        key: StateKey,
        entry: Entry,
        out: ev.Outcome,
        row: RuleRow | None,
        device: Device | None,
        *,
        observed: bool = False,
        edge: EdgeAlert | None = None,
    ) -> None:
        entry.state = out.state
        if observed and out.state.active:
            entry.touched = True
        for a in out.actions:
            if a.act is ev.Act.OPEN:
                # the id is planned now so that later actions of this batch can name it
                entry.alert_id = uuid.uuid4()
            self.actions.append(_Staged(key, entry, a, entry.alert_id, row, device, edge))
            if a.act is ev.Act.CLEAR:
                entry.alert_id = None
                entry.touched = False

    def commit(self) -> None:
        conn = self.e._db()
        with conn.transaction():
            real = self._write_actions(conn)
            for entry in self.staged.values():
                if entry.alert_id is not None:
                    entry.alert_id = real.get(entry.alert_id, entry.alert_id)
            self._write_touched(conn)
            self._write_states(conn)
        # committed: make it current
        for key, entry in self.staged.items():
            entry.touched = False
            self.e.entries[key] = entry
        for st in self.actions:
            self.e.stats.actions[st.action.act.value] += 1

    def _write_actions(self, conn: psycopg.Connection) -> dict[uuid.UUID, uuid.UUID]:
        """Write the actions in order; return planned → actual ids (they differ when an open
        adopted an alert already active in the database)."""
        real: dict[uuid.UUID, uuid.UUID] = {}
        for st in self.actions:
            if st.alert_id is None:
                continue  # active in state, but its alert is gone: nothing to write to
            if st.action.act is ev.Act.OPEN:
                assert st.row is not None and st.device is not None
                real[st.alert_id] = self._insert_alert(conn, st, st.row, st.device)
            else:
                self._update_for(conn, real.get(st.alert_id, st.alert_id), st.action, st.device)
        return real

    def _insert_alert(
        self, conn: psycopg.Connection, st: _Staged, row: RuleRow, device: Device
    ) -> uuid.UUID:
        dev, rule_key, target = st.key
        a, spec, edge = st.action, row.spec, st.edge
        planned = st.alert_id
        assert planned is not None
        # Correlation may raise the level (unpermitted work) and adds its factors, so the
        # stored severity, priority and outbox entry all say the same, explained.
        c = self._correlate(conn, st, device)
        a = replace(a, level=c.level, factors=(*a.factors, *c.factors))
        got = conn.execute(
            "INSERT INTO alerts (id, created_at, project_id, device_id, source, rule, severity, "
            "status, camera, zone, event_id, evidence_id, detail, target, rule_id, "
            "rule_revision, title, last_seen_at, last_value, worst_value, threshold, unit, "
            "occurrences, priority, factors, status_changed_at, last_notified_at, notify_count, "
            "correlation, unpermitted_work, worker_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, 1, %s, %s, %s, %s, 1, %s, %s, %s) "
            "ON CONFLICT (device_id, rule, target) WHERE cleared_at IS NULL DO NOTHING "
            "RETURNING id",
            (
                planned,
                a.at,
                device.project_id,
                dev,
                "edge" if spec.kind is RuleKind.EDGE else "hub",
                rule_key,
                a.level.value,
                edge.camera if edge else None,
                edge.zone if edge else None,
                edge.event_id if edge else None,
                edge.evidence_id if edge else None,
                (edge.detail if edge and edge.detail else a.reason)[:500],
                target,
                row.id,
                row.revision,
                spec.title,
                a.at,
                a.value,
                a.value,
                a.threshold,
                spec.unit,
                a.priority,
                Jsonb([f.to_json() for f in a.factors]),
                self.now,
                self.now,
                Jsonb(c.correlation.model_dump(mode="json")),
                c.correlation.unpermitted_work,
                c.correlation.worker_id,
            ),
        ).fetchone()
        if got is None:
            # An alert for this target is already active (state lost, or a second engine on
            # the same database): adopt it rather than open a duplicate.
            existing = conn.execute(
                "UPDATE alerts SET severity = CASE WHEN %s = 'alarm' THEN 'alarm' "
                "ELSE severity END, updated_at = %s WHERE device_id = %s AND rule = %s "
                "AND target = %s AND cleared_at IS NULL RETURNING id",
                (a.level.value, self.now, *st.key),
            ).fetchone()
            assert existing is not None
            log.warning("alert engine: adopted the active alert %s of %s", existing[0], st.key)
            return existing[0]
        record(
            conn,
            planned,
            device.project_id,
            None,
            Status.OPEN,
            *ENGINE_ACTOR,
            self.now,
            note=a.reason,
        )
        self._outbox(conn, planned, device.project_id, a, st.key, spec.title, "officer")
        return planned

    def _correlate(self, conn: psycopg.Connection, st: _Staged, device: Device) -> cr.Correlated:
        """Correlate the alert being opened; whatever fails, the alert still opens."""
        a, edge = st.action, st.edge
        try:
            subject = cr.Subject(
                project_id=device.project_id,
                device_id=device.id,
                rule=st.key[1],
                target=st.key[2],
                zone=edge.zone if edge else None,
                level=a.level,
                event_id=edge.event_id if edge else None,
                on=a.at.astimezone(self.e.tz).date(),
            )
            return cr.correlate(
                conn, subject, low_credit_score=self.e.settings.alerts_low_credit_score
            )
        except CONNECTION_ERRORS:
            raise  # the alert cannot be written either: the batch is retried
        except Exception as exc:  # a bug in correlation must not keep an alert from opening
            log.exception("alert engine: correlating the alert of %s failed", st.key)
            return cr.failed(a.level, None, exc)

    def _update_for(
        self, conn: psycopg.Connection, alert_id: uuid.UUID, a: ev.Action, device: Device | None
    ) -> None:
        if a.act is ev.Act.ESCALATE:
            # The rule's factors replace the opening ones; correlation's still hold and are
            # kept (but for a level raise, which the rule's own alarm now makes moot).
            got = conn.execute(
                "SELECT correlation FROM alerts WHERE id = %s", (alert_id,)
            ).fetchone()
            carried = cr.carried_factors(got[0] if got else None)
            # the outbox entry below then tells the same priority as the row
            a = replace(a, factors=(*a.factors, *carried))
            conn.execute(
                "UPDATE alerts SET severity = 'alarm', escalated_at = %s, threshold = %s, "
                "priority = GREATEST(priority, %s), factors = %s, last_notified_at = %s, "
                "notify_count = notify_count + 1, updated_at = %s WHERE id = %s",
                (
                    a.at,
                    a.threshold,
                    a.priority,
                    Jsonb([f.to_json() for f in a.factors]),
                    self.now,
                    self.now,
                    alert_id,
                ),
            )
        elif a.act is ev.Act.CLEAR:
            conn.execute(
                "UPDATE alerts SET cleared_at = %s, clear_reason = %s, updated_at = %s "
                "WHERE id = %s AND cleared_at IS NULL",
                (a.at, a.reason, self.now, alert_id),
            )
        elif a.act is ev.Act.REPEAT:
            conn.execute(
                "UPDATE alerts SET last_notified_at = %s, notify_count = notify_count + 1, "
                "updated_at = %s WHERE id = %s",
                (self.now, self.now, alert_id),
            )
        elif a.act is ev.Act.REGULATOR:
            conn.execute(
                "UPDATE alerts SET regulator_notified_at = %s, updated_at = %s WHERE id = %s",
                (self.now, self.now, alert_id),
            )
        project = device.project_id if device else _project_of(conn, alert_id)
        audience = "regulator" if a.act is ev.Act.REGULATOR else "officer"
        self._outbox(conn, alert_id, project, a, None, None, audience)

    def _outbox(
        self,
        conn: psycopg.Connection,
        alert_id: uuid.UUID,
        project_id: str,
        a: ev.Action,
        key: StateKey | None,
        title: str | None,
        audience: str,
    ) -> None:
        payload: dict[str, Any] = {
            "alert_id": str(alert_id),
            "action": a.act.value,
            "level": a.level.value,
            "at": a.at.isoformat(),
            "reason": a.reason,
            "value": a.value,
            "threshold": a.threshold,
            "priority": a.priority,
        }
        if key is not None:
            payload.update(device_id=key[0], rule=key[1], target=key[2], title=title)
        conn.execute(
            "INSERT INTO alert_outbox (alert_id, action, audience, project_id, payload) "
            "VALUES (%s, %s, %s, %s, %s)",
            (alert_id, a.act.value, audience, project_id, Jsonb(payload)),
        )

    def _write_touched(self, conn: psycopg.Connection) -> None:
        rows = [
            (e.state.last_time, e.state.last_value, e.state.worst, e.state.occurrences, e.alert_id)
            for e in self.staged.values()
            if e.touched and e.alert_id is not None
        ]
        if rows:
            conn.cursor().executemany(
                "UPDATE alerts SET last_seen_at = GREATEST(last_seen_at, %s), last_value = %s, "
                "worst_value = %s, occurrences = GREATEST(occurrences, %s), updated_at = now() "
                "WHERE id = %s",
                rows,
            )

    def _write_states(self, conn: psycopg.Connection) -> None:
        flush = timedelta(seconds=self.e.settings.alerts_state_flush_seconds)
        rows = []
        for key, e in self.staged.items():
            sig = _sig(e.state)
            moved = e.state.last_time is not None and (
                e.saved_time is None or e.state.last_time - e.saved_time >= flush
            )
            if sig == e.saved_sig and not moved:
                continue  # only the last-reading time moved, and not by much
            rows.append((*key, e.alert_id, Jsonb(ev.state_to_json(e.state))))
            e.saved_sig, e.saved_time = sig, e.state.last_time
        if rows:
            conn.cursor().executemany(
                "INSERT INTO alert_state (device_id, rule, target, alert_id, state, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (device_id, rule, target) DO "
                "UPDATE SET alert_id = EXCLUDED.alert_id, state = EXCLUDED.state, "
                "updated_at = now()",
                rows,
            )


def _project_of(conn: psycopg.Connection, alert_id: uuid.UUID) -> str:
    row = conn.execute("SELECT project_id FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    return row[0] if row else ""


def active_alerts(conn: psycopg.Connection, device_ids: Iterable[str] | None = None) -> list[Any]:
    """Active (not cleared) alerts, newest first: for the CLI and tests."""
    return conn.execute(
        "SELECT id, device_id, rule, target, severity, status, created_at, last_value "
        "FROM alerts WHERE cleared_at IS NULL AND (%s::text[] IS NULL OR device_id = ANY(%s)) "
        "ORDER BY created_at DESC",
        (list(device_ids) if device_ids is not None else None,) * 2,
    ).fetchall()
