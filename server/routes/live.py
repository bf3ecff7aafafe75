"""The live alert stream over a WebSocket, scoped like every other read."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from psycopg_pool import ConnectionPool

from server.deps import websocket_principal
from server.stream import AlertStream

router = APIRouter(tags=["alerts"])

# 4401: the application's "unauthorized" close code (4000-4999 are the application's own).
CLOSE_UNAUTHORIZED = 4401


@router.websocket("/api/alerts/live")
async def alerts_live(
    ws: WebSocket,
    token: Annotated[str, Query(description="A login token (browsers cannot set headers).")],
) -> None:
    """Each outbox entry (open, escalate, repeat, clear, lifecycle transition) of an alert in
    the caller's scope, as JSON ``AlertEvent`` objects, from the moment of connecting."""
    pool: ConnectionPool = ws.app.state.pool
    with pool.connection() as conn:
        principal = websocket_principal(ws, conn, token)
    stream: AlertStream | None = ws.app.state.stream
    if principal is None or stream is None:
        await ws.close(CLOSE_UNAUTHORIZED, "log in again")
        return
    await ws.accept()
    sub = stream.subscribe(principal)
    try:
        await ws.send_json({"type": "hello", "name": principal.name, "role": principal.role})
        while (event := await sub.queue.get()) is not None:
            await ws.send_text(event.model_dump_json())
        await ws.close(1013, "too slow; reconnect")
    except WebSocketDisconnect:
        pass
    finally:
        stream.unsubscribe(sub)
        with contextlib.suppress(RuntimeError):
            await ws.close()
