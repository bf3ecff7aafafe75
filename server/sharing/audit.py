"""The audit of every request made with an API key: who (the key), what (method, path,
dataset, fields, the query), when, the status and how many records.

An ASGI middleware: the route declares what it read (``grants.declare_access``, or
``server.audit.personal_read``); for routes that declare nothing the dataset comes from the
path and the records from the JSON body (a list, a page's ``items``, else one object). The
row is written before the last byte of the response leaves, so a caller that has the
response can already find its audit row; a request that fails still leaves one (records 0).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.principal import Principal
from server.security import parse_api_key
from server.sharing.grants import route_resource

log = logging.getLogger(__name__)

_BODY_LIMIT = 8 * 1024 * 1024  # bodies larger than this are not parsed for a count


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


_SHARING_PATH = re.compile(r"^/api/(?:sharing|exports)/([a-z_-]+)$")


def audit_resource(path: str) -> str:
    """The dataset a path reads, for the audit (the path itself where none is known)."""
    m = _SHARING_PATH.match(path)
    if m:
        return m.group(1)
    if path == "/api/data-quality":
        return "data-quality"
    _, dataset = route_resource(path)
    return dataset or path


def count_records(status: int, body: bytes) -> int:
    if status >= 400 or not body:
        return 0
    try:
        data = json.loads(body)
    except ValueError:
        return 1
    if isinstance(data, list):
        return len(data)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return len(data["items"])
    return 1


def write_audit(
    conn: psycopg.Connection,
    *,
    principal: str,
    role: str,
    key_id: str | None,
    method: str,
    path: str,
    query: str,
    resource: str,
    fields: list[str] | None,
    records: int,
    status: int,
    personal_data: str | None,
) -> None:
    conn.execute(
        "INSERT INTO access_audit (principal, role, key_id, method, path, query, resource,"
        " fields, records, status, personal_data)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            principal,
            role,
            key_id,
            method,
            path,
            query,
            resource,
            fields,
            records,
            status,
            personal_data or None,
        ),
    )


class KeyAccessAudit:
    """Audits every HTTP request that carries X-API-Key (and no bearer token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or _header(scope, b"x-api-key") is None
            or _header(scope, b"authorization") is not None
        ):
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {"status": 500, "json": False, "body": [], "size": 0, "done": False}

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                ctype = _header(message, b"content-type") or ""
                seen["json"] = ctype.startswith("application/json")
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if seen["json"] and seen["size"] <= _BODY_LIMIT:
                    seen["body"].append(body)
                    seen["size"] += len(body)
                if not message.get("more_body", False) and not seen["done"]:
                    seen["done"] = True
                    await self._record(scope, seen)
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            if not seen["done"]:  # the app failed before it answered
                seen["done"] = True
                await self._record(scope, seen)

    async def _record(self, scope: Scope, seen: dict[str, Any]) -> None:
        try:
            await run_in_threadpool(self._write, scope, seen)
        except Exception:  # the audit must not turn a served request into an error page
            log.exception("could not write the access audit of %s", scope.get("path"))

    def _write(self, scope: Scope, seen: dict[str, Any]) -> None:
        state = scope.get("state") or {}
        p: Principal | None = state.get("principal")
        access: dict[str, Any] | None = state.get("access")
        path: str = scope.get("path", "")
        status = int(seen["status"])
        if access is not None:
            resource = access["resource"]
            fields = access["fields"]
            records = int(access["records"]) if status < 400 else 0
            personal = access.get("personal_data")
        else:
            resource = audit_resource(path)
            fields = None
            body = b"".join(seen["body"]) if seen["size"] <= _BODY_LIMIT else b""
            records = count_records(status, body) if seen["json"] else int(status < 400)
            personal = None
        if p is not None:
            principal, role, key_id = p.label, p.role, p.id
        else:  # the key did not authenticate: keep its claimed id apart from real ones
            parsed = parse_api_key(_header(scope, b"x-api-key") or "")
            principal, role, key_id = "key:<invalid>", "none", None
            resource = f"{resource} (claimed key {parsed[0][:32]})" if parsed else resource
        pool = scope["app"].state.pool
        with pool.connection() as conn:
            write_audit(
                conn,
                principal=principal,
                role=role,
                key_id=key_id,
                method=scope.get("method", ""),
                path=path,
                query=scope.get("query_string", b"").decode("latin-1")[:2000],
                resource=resource,
                fields=fields,
                records=records,
                status=status,
                personal_data=personal,
            )
