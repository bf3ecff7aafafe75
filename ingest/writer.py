"""Write a batch of decoded messages in one transaction: registry checks, ledger, COPY.

Idempotency: every message id goes into ``ingest_ledger`` (primary key) in the same
transaction as its rows; ids already there are duplicates and write nothing. Two workers
racing on one id serialise on the ledger's unique index, so exactly one writes the rows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from ingest.decode import Accepted, DeadLetter, Evidence, Reason, dead
from smartsite.protocol.messages import Attendance, EdgeAlert, Event, Status, Telemetry

log = logging.getLogger(__name__)

TELEMETRY_COPY = (
    "COPY telemetry (time, project_id, device_id, metric, value, unit, message_id) FROM STDIN"
)
EVENTS_COPY = (
    "COPY events (time, project_id, device_id, camera, event_id, type, track_id, label, score, "
    "box, zones, attributes, evidence_id, message_id) FROM STDIN"
)
ATTENDANCE_COPY = (
    "COPY attendance (time, project_id, device_id, worker_id, similarity, direction, camera, "
    "evidence_id, message_id) FROM STDIN"
)
STATUS_COPY = (
    "COPY device_status (time, project_id, device_id, state, detail, message_id) FROM STDIN"
)
DEAD_COPY = (
    "COPY dead_letters (topic, reason_code, reason, payload, payload_size, project_id, device_id) "
    "FROM STDIN"
)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    project_id: str
    gateway_id: str | None


@dataclass
class BatchResult:
    written: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


class Directory:
    """Device registry cache; misses are looked up in the batch's transaction."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}

    def resolve(self, conn: psycopg.Connection, ids: Iterable[str]) -> None:
        missing = [i for i in set(ids) if i not in self.devices]
        if not missing:
            return
        rows = conn.execute(
            "SELECT id, project_id, gateway_id FROM devices WHERE active AND id = ANY(%s)",
            (missing,),
        ).fetchall()
        for dev, project, gateway in rows:
            self.devices[dev] = DeviceInfo(project, gateway)

    def check(self, acc: Accepted) -> tuple[Reason, str] | None:
        t = acc.topic
        info = self.devices.get(t.device)
        if info is None:
            return Reason.UNKNOWN_DEVICE, f"device {t.device!r} is not registered (or inactive)"
        if info.project_id != t.project:
            return Reason.WRONG_PROJECT, (
                f"device {t.device!r} belongs to project {info.project_id!r}, not {t.project!r}"
            )
        if isinstance(acc.message, Telemetry):
            for r in acc.message.readings:
                if r.source is None or r.source == t.device:
                    continue
                src = self.devices.get(r.source)
                if src is None or src.gateway_id != t.device:
                    return Reason.UNKNOWN_SOURCE, (
                        f"reading source {r.source!r} is not a device behind gateway {t.device!r}"
                    )
        return None


def _sources(acc: Accepted) -> list[str]:
    ids = [acc.topic.device]
    if isinstance(acc.message, Telemetry):
        ids.extend(r.source for r in acc.message.readings if r.source)
    return ids


def write_batch(
    conn: psycopg.Connection, directory: Directory, items: list[Accepted | DeadLetter]
) -> BatchResult:
    """Write ``items`` in one transaction on ``conn`` (which must not be in autocommit)."""
    res = BatchResult()
    accepted: list[Accepted] = []
    with conn.transaction():
        directory.resolve(conn, (d for a in items if isinstance(a, Accepted) for d in _sources(a)))
        for item in items:
            if isinstance(item, DeadLetter):
                res.dead.append(item)
                continue
            problem = directory.check(item)
            if problem:
                res.dead.append(dead(item.raw_topic, *problem, item.raw, item.topic))
            else:
                accepted.append(item)
        new = _claim(conn, accepted, res)
        _copy_rows(conn, new, res)
        _write_dead(conn, res.dead)
        _touch_devices(conn, new)
    return res


def _claim(conn: psycopg.Connection, accepted: list[Accepted], res: BatchResult) -> list[Accepted]:
    """Record message ids in the ledger; return the messages not ingested before."""
    by_id: dict[uuid.UUID, Accepted] = {}
    out: list[Accepted] = []
    for a in accepted:
        if isinstance(a.message, Evidence):
            out.append(a)  # idempotent by its own key (device, evidence id)
            continue
        mid = a.message.id  # type: ignore[attr-defined]
        if mid in by_id:
            res.duplicates += 1
        else:
            by_id[mid] = a
    if by_id:
        ids = sorted(by_id)  # one lock order for all workers: no deadlocks on the ledger
        rows = conn.execute(
            "INSERT INTO ingest_ledger (message_id, device_id, seq) "
            "SELECT * FROM unnest(%s::uuid[], %s::text[], %s::bigint[]) ON CONFLICT DO NOTHING "
            "RETURNING message_id",
            (ids, [by_id[i].topic.device for i in ids], [by_id[i].message.seq for i in ids]),
        ).fetchall()
        fresh = {r[0] for r in rows}
        res.duplicates += len(by_id) - len(fresh)
        out.extend(a for i, a in by_id.items() if i in fresh)
    return out


def _copy_rows(conn: psycopg.Connection, new: list[Accepted], res: BatchResult) -> None:
    tele, events, att, status = [], [], [], []
    alerts, evidence = [], []
    for a in new:
        m = a.message
        if isinstance(m, Telemetry):
            tele.append(a)
        elif isinstance(m, Event):
            events.append(a)
        elif isinstance(m, Attendance):
            att.append(a)
        elif isinstance(m, Status):
            status.append(a)
        elif isinstance(m, EdgeAlert):
            alerts.append(a)
        elif isinstance(m, Evidence):
            evidence.append(a)
    cur = conn.cursor()
    if tele:
        lines = _telemetry_lines(tele)
        with cur.copy(TELEMETRY_COPY) as cp:
            cp.write("".join(lines))
        res.written["telemetry"] = len(lines)
    if events:
        with cur.copy(EVENTS_COPY) as cp:
            for a in events:
                m = a.message
                assert isinstance(m, Event)
                o = m.after
                cp.write_row(
                    (
                        m.ts,
                        a.topic.project,
                        a.topic.device,
                        m.camera,
                        m.event_id,
                        m.type.value,
                        m.track_id,
                        o.label,
                        o.score,
                        list(o.box),
                        o.zones,
                        Jsonb(o.attributes.model_dump(mode="json", exclude_none=True)),
                        m.evidence_id,
                        m.id,
                    )
                )
        res.written["events"] = len(events)
    if att:
        with cur.copy(ATTENDANCE_COPY) as cp:
            for a in att:
                m = a.message
                assert isinstance(m, Attendance)
                cp.write_row(
                    (
                        m.ts,
                        a.topic.project,
                        a.topic.device,
                        m.worker_id,
                        m.similarity,
                        m.direction.value,
                        m.camera,
                        m.evidence_id,
                        m.id,
                    )
                )
        res.written["attendance"] = len(att)
    if status:
        with cur.copy(STATUS_COPY) as cp:
            for a in status:
                m = a.message
                assert isinstance(m, Status)
                cp.write_row(
                    (m.ts, a.topic.project, a.topic.device, m.state.value, Jsonb(m.detail), m.id)
                )
        res.written["device_status"] = len(status)
    if alerts:
        # The raw record of each occurrence; the alert engine turns them into alerts.
        cur.executemany(
            "INSERT INTO edge_alerts (time, project_id, device_id, rule, severity, camera, zone, "
            "event_id, evidence_id, detail, message_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    m.ts,
                    a.topic.project,
                    a.topic.device,
                    m.rule.value,
                    m.severity.value,
                    m.camera,
                    m.zone,
                    m.event_id,
                    m.evidence_id,
                    m.detail,
                    m.id,
                )
                for a in alerts
                if isinstance(m := a.message, EdgeAlert)
            ],
        )
        res.written["edge_alerts"] = len(alerts)
    if evidence:
        cur.executemany(
            "INSERT INTO evidence (id, device_id, project_id, content_type, sha256, data) "
            "VALUES (%s, %s, %s, 'image/jpeg', %s, %s) ON CONFLICT DO NOTHING",
            [
                (m.id, a.topic.device, a.topic.project, m.sha256, m.data)
                for a in evidence
                if isinstance(m := a.message, Evidence)
            ],
        )
        res.written["evidence"] = len(evidence)


def _copy_text(value: str) -> str:
    """Escape a free-text value for COPY's text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        value = value.replace("\r", "\\r")
    return value


def _telemetry_lines(tele: list[Accepted]) -> list[str]:
    """COPY text lines for the readings, formatted here rather than by write_row: this is
    the hottest loop of ingest. Ids, sources and metrics are pattern-validated (no escapes);
    the unit is free text and escaped; the timestamp is formatted once per message."""
    lines = []
    for a in tele:
        m = a.message
        assert isinstance(m, Telemetry)
        project, device, ts, mid = a.topic.project, a.topic.device, m.ts.isoformat(), str(m.id)
        for r in m.readings:
            time = r.time.isoformat() if r.time else ts
            lines.append(
                f"{time}\t{project}\t{r.source or device}\t{r.metric}\t{r.value!r}\t"
                f"{_copy_text(r.unit)}\t{mid}\n"
            )
    return lines


def _write_dead(conn: psycopg.Connection, dead_letters: list[DeadLetter]) -> None:
    if not dead_letters:
        return
    with conn.cursor().copy(DEAD_COPY) as cp:
        for d in dead_letters:
            cp.write_row(
                (
                    d.topic,
                    d.reason_code.value,
                    d.reason,
                    d.payload,
                    d.payload_size,
                    d.project_id,
                    d.device_id,
                )
            )


def _touch_devices(conn: psycopg.Connection, new: list[Accepted]) -> None:
    """Keep last_seq / last_seen per device (gaps are counted from the ledger, see
    :func:`missing_sequences`, since parallel writers see a device's messages out of order)."""
    latest: dict[str, tuple[int, datetime]] = {}
    for a in new:
        m = a.message
        if isinstance(m, Evidence):
            continue
        dev, seq, ts = a.topic.device, m.seq, m.ts  # type: ignore[attr-defined]
        if dev not in latest or seq > latest[dev][0]:
            latest[dev] = (seq, ts)
    if latest:
        devs = sorted(latest)  # one lock order for all writers: no deadlocks
        conn.execute(
            "UPDATE devices d SET last_seq = GREATEST(d.last_seq, v.seq), "
            "last_seen = GREATEST(d.last_seen, LEAST(v.ts, now())) "
            "FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[]) AS v(id, seq, ts) "
            "WHERE d.id = v.id",
            (devs, [latest[d][0] for d in devs], [latest[d][1] for d in devs]),
        )


def missing_sequences(conn: psycopg.Connection, since: timedelta) -> dict[str, int]:
    """Per device, sequence numbers missing among the messages ingested in ``since``
    (seq 0, the last will, is outside the sequence)."""
    rows = conn.execute(
        "SELECT device_id, max(seq) - min(seq) + 1 - count(DISTINCT seq) FROM ingest_ledger "
        "WHERE seq > 0 AND received_at > now() - %s GROUP BY device_id",
        (since,),
    ).fetchall()
    return {dev: int(n) for dev, n in rows if n}
