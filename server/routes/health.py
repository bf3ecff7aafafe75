"""Liveness and readiness for orchestrators and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from server.deps import Conn

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    schema_version: int | None = None


@router.get("/healthz")
def live() -> Health:
    return Health(status="ok")


@router.get("/readyz")
def ready(conn: Conn) -> Health:
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return Health(status="ok", schema_version=row[0] if row else None)
