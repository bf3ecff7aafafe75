"""Live alerts: one LISTEN on ``alert_outbox`` per server process, fanned out to every
connected WebSocket whose principal's scope holds the alert's project.

The outbox row is written in the transaction that opened or changed the alert, and its
NOTIFY fires at commit: when a client receives it, the alert is already readable through
the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from alerts.notify import Notification
from server.principal import Principal

log = logging.getLogger(__name__)
_QUEUE_SIZE = 1000
_BATCH = 500


class AlertEvent(Notification):
    """What a client receives on the stream for each outbox entry in its scope: what a
    webhook receives, tagged for the client."""

    type: str = "alert"


class Subscriber:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[AlertEvent | None] = asyncio.Queue(_QUEUE_SIZE)


class AlertStream:
    def __init__(self, database_url: str, poll_seconds: float = 5.0) -> None:
        self._url = database_url
        self._poll = poll_seconds
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0

    async def start(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url) as conn:
            cur = await conn.execute("SELECT coalesce(max(id), 0) FROM alert_outbox")
            row = await cur.fetchone()
            self._cursor = int(row[0]) if row else 0
        self._task = asyncio.create_task(self._run(), name="alert-stream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for s in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                s.queue.put_nowait(None)

    def subscribe(self, principal: Principal) -> Subscriber:
        s = Subscriber(principal)
        self._subscribers.add(s)
        return s

    def unsubscribe(self, s: Subscriber) -> None:
        self._subscribers.discard(s)

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN alert_outbox")
                    await self._drain(conn)  # whatever committed while (re)connecting
                    while True:
                        # Wake on NOTIFY, or poll now and then in case a notification was lost.
                        async for _ in conn.notifies(timeout=self._poll, stop_after=1):
                            pass
                        await self._drain(conn)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert stream lost its database connection; reconnecting")
                await asyncio.sleep(1.0)

    async def _drain(self, conn: psycopg.AsyncConnection) -> None:
        while await self._batch(conn) == _BATCH:
            pass

    async def _batch(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(
            "SELECT id, alert_id, action, audience, project_id, created_at, payload"
            " FROM alert_outbox WHERE id > %s ORDER BY id LIMIT %s",
            (self._cursor, _BATCH),
        )
        rows = await cur.fetchall()
        for row in rows:
            self._cursor = row[0]
            event = AlertEvent(
                outbox_id=row[0],
                alert_id=str(row[1]),
                action=row[2],
                audience=row[3],
                project_id=row[4],
                created_at=row[5],
                payload=row[6],
            )
            for s in list(self._subscribers):
                if s.principal.sees(event.project_id):
                    try:
                        s.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        self._drop(s)
        return len(rows)

    def _drop(self, s: Subscriber) -> None:
        """A client too slow to keep up is closed (it reconnects and reloads the list)."""
        log.warning("closing a slow alert stream client (%s)", s.principal.label)
        self.unsubscribe(s)
        while not s.queue.empty():
            s.queue.get_nowait()
        s.queue.put_nowait(None)
