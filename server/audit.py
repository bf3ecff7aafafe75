"""The audit of personal-data reads by data-sharing principals (keys and data-sharing users):
who, what, when and how many records."""

from __future__ import annotations

import psycopg
from fastapi import Request

from server.principal import Principal
from server.sharing.grants import declare_access


def needs_audit(p: Principal) -> bool:
    return p.kind == "key" or p.role == "data_sharing"


def personal_read(
    conn: psycopg.Connection, p: Principal, request: Request, resource: str, records: int
) -> None:
    if not needs_audit(p):
        return
    if p.kind == "key":  # server.sharing.audit writes the one row of every key request
        declare_access(request, resource, (), records, "masked")
        return
    conn.execute(
        "INSERT INTO access_audit (principal, role, method, path, resource, records)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (p.label, p.role, request.method, request.url.path, resource, records),
    )
