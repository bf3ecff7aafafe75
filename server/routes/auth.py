"""Log in (user name and password → a bearer token) and who am I."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.deps import Conn, Current, SettingsDep, principal_for_token
from server.errors import ApiError
from server.principal import Principal
from server.security import create_token, verify_password
from smartsite.identifiers import mask_uscc

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)


class Me(BaseModel):
    name: str
    kind: str
    role: str
    district: str | None
    enterprise: str | None = Field(description="The enterprise's credit code, masked.")
    projects: list[str] | None = Field(description="Projects in scope; null: every project.")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_at: datetime
    me: Me


def _me(p: Principal) -> Me:
    return Me(
        name=p.name,
        kind=p.kind,
        role=p.role,
        district=p.district,
        enterprise=mask_uscc(p.enterprise_uscc) if p.enterprise_uscc else None,
        projects=p.pids,
    )


def _check_rate(conn: Conn, settings: SettingsDep, username: str, client: str) -> None:
    """Too many failures for this user name, or from this client, in the window: 429."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE username = %(u)s), count(*) FILTER (WHERE client = %(c)s)"
        " FROM login_attempts WHERE NOT ok AND at > now() - make_interval(secs => %(w)s)"
        " AND (username = %(u)s OR client = %(c)s)",
        {"u": username, "c": client, "w": settings.login_window_seconds},
    ).fetchone()
    by_user, by_client = row if row else (0, 0)
    if by_user >= settings.login_max_failures or by_client >= 4 * settings.login_max_failures:
        raise ApiError(
            429,
            "too_many_requests",
            "too many failed logins; wait and try again",
            headers={"Retry-After": str(settings.login_window_seconds)},
        )


@router.post("/login", responses={429: {"description": "Too many failed logins."}})
def login(body: LoginIn, request: Request, conn: Conn, settings: SettingsDep) -> TokenOut:
    client = request.client.host if request.client else "unknown"
    _check_rate(conn, settings, body.username, client)
    row = conn.execute(
        "SELECT id, role, password_hash FROM users WHERE username = %s AND active",
        (body.username,),
    ).fetchone()
    ok = verify_password(body.password, row[2] if row else None)
    conn.execute(
        "INSERT INTO login_attempts (username, client, ok) VALUES (%s, %s, %s)",
        (body.username, client, ok),
    )
    if not ok or row is None:
        raise ApiError(401, "unauthorized", "wrong user name or password")
    key: bytes = request.app.state.secret_key
    token, expires = create_token(key, row[0], row[1], settings.token_minutes)
    p = principal_for_token(conn, key, token)
    assert p is not None
    return TokenOut(access_token=token, expires_at=expires, me=_me(p))


@router.get("/me")
def me(p: Current) -> Me:
    return _me(p)
