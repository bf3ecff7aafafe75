"""Request dependencies: settings, a pooled connection, the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from server.errors import ApiError, forbidden, not_found
from server.principal import KeyGrant, Principal, key_projects, user_projects
from server.security import api_key_matches, decode_token, parse_api_key
from server.sharing.grants import gate_key_route
from smartsite.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/auth/login.")
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An integration or data-sharing key."
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    pool: ConnectionPool = request.app.state.pool
    with pool.connection() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
Conn = Annotated[psycopg.Connection, Depends(get_conn)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def principal_for_token(conn: psycopg.Connection, key: bytes, token: str) -> Principal | None:
    user_id = decode_token(key, token)
    if user_id is None:
        return None
    row = conn.execute(
        "SELECT username, role, district_code, enterprise_uscc FROM users WHERE id = %s AND active",
        (user_id,),
    ).fetchone()
    if row is None:
        return None
    name, role, district, enterprise = row
    return Principal(
        kind="user",
        id=str(user_id),
        name=name,
        role=role,
        district=district,
        enterprise_uscc=enterprise,
        project_ids=user_projects(conn, user_id, role, district, enterprise),
    )


def principal_for_key(conn: psycopg.Connection, key: bytes, full: str) -> Principal | None:
    parsed = parse_api_key(full)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = %s AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())"
        " RETURNING name, role, grant_spec, secret_hash",
        (key_id,),
    ).fetchone()
    if row is None or not api_key_matches(key, secret, row[3]):
        return None
    grant = KeyGrant.model_validate(row[2])
    return Principal(
        kind="key",
        id=key_id,
        name=row[0],
        role=row[1],
        district=grant.district,
        project_ids=key_projects(conn, grant),
        grant=grant,
    )


def current_principal(
    request: Request,
    conn: Conn,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    key: bytes = request.app.state.secret_key
    if bearer is not None:
        p = principal_for_token(conn, key, bearer.credentials)
        if p is None:
            raise _unauthorized("the token is invalid or has expired; log in again")
        return p
    if api_key is not None:
        p = principal_for_key(conn, key, api_key)
        if p is None:
            raise _unauthorized("the API key is invalid, revoked or expired")
        request.state.principal = p  # server.sharing.audit records the request
        gate_key_route(request, p)
        return p
    raise _unauthorized("log in (Authorization: Bearer <token>) or send X-API-Key")


Current = Annotated[Principal, Depends(current_principal)]


def require(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency admitting only ``roles`` (403 names the roles that may)."""

    def check(p: Current) -> Principal:
        if p.role not in roles:
            raise forbidden(f"only {', '.join(roles)} may do this")
        return p

    return check


def websocket_principal(ws: WebSocket, conn: psycopg.Connection, token: str) -> Principal | None:
    return principal_for_token(conn, ws.app.state.secret_key, token)


def scoped_project(conn: psycopg.Connection, p: Principal, project_id: str) -> None:
    """404 unless the project exists and is in the caller's scope (the two look alike)."""
    if not p.sees(project_id):
        raise not_found("project")
    if conn.execute("SELECT 1 FROM projects WHERE id = %s", (project_id,)).fetchone() is None:
        raise not_found("project")
