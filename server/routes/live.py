"""The live alert stream over a WebSocket, scoped like every other read."""

from __future__ import annotations

import asyncio
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
    # Listen as well as send: a closed browser tab, or the server shutting down (uvicorn
    # closes sockets), ends the handler at once instead of at the next alert.
    listening = asyncio.create_task(_until_disconnect(ws))
    try:
        await ws.send_json({"type": "hello", "name": principal.name, "role": principal.role})
        while True:
            getting = asyncio.create_task(sub.queue.get())
            await asyncio.wait({getting, listening}, return_when=asyncio.FIRST_COMPLETED)
            if listening.done():
                getting.cancel()
                return
            event = getting.result()
            if event is None:
                await ws.close(1013, "too slow; reconnect")
                return
            await ws.send_text(event.model_dump_json())
    except WebSocketDisconnect:
        pass
    finally:
        listening.cancel()
        stream.unsubscribe(sub)


async def _until_disconnect(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(RuntimeError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
