"""Administration (admins only): user accounts, API keys and the audit of personal-data reads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.deps import Conn, require
from server.errors import ApiError, not_found
from server.pagination import Page, Paging
from server.principal import KeyGrant, Principal
from server.security import hash_password
from server.users import UserError, UserIn, create_api_key, create_user

router = APIRouter(tags=["admin"])

Admin = Annotated[Principal, Depends(require("admin"))]


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid", message)


# --- users ---------------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    district_code: str | None
    enterprise_uscc: str | None
    active: bool
    created_at: datetime
    projects: list[str] = Field(description="Projects assigned (officers, data sharing).")


_USER_SELECT = (
    "SELECT u.id, u.username, u.display_name, u.role, u.district_code,"
    " btrim(u.enterprise_uscc) AS enterprise_uscc, u.active, u.created_at,"
    " coalesce((SELECT array_agg(up.project_id ORDER BY up.project_id) FROM user_projects up"
    " WHERE up.user_id = u.id), '{}') AS projects FROM users u"
)


def _user(conn: psycopg.Connection, user_id: int) -> UserOut:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_USER_SELECT + " WHERE u.id = %s", (user_id,)).fetchone()
    if row is None:
        raise not_found("user")
    return UserOut(**row)


@router.get("/api/users")
def list_users(
    p: Admin,
    conn: Conn,
    page: Paging,
    role: Annotated[str | None, Query(max_length=20, description="Only this role.")] = None,
    active: Annotated[bool | None, Query(description="Only (in)active accounts.")] = None,
) -> Page[UserOut]:
    """User accounts (never their password hashes)."""
    where = (
        " WHERE (%(role)s::text IS NULL OR u.role = %(role)s)"
        " AND (%(active)s::boolean IS NULL OR u.active = %(active)s)"
    )
    args: dict[str, Any] = {"role": role, "active": active}
    total = conn.execute("SELECT count(*) FROM users u" + where, args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _USER_SELECT + where + " ORDER BY u.username LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
    return Page(
        items=[UserOut(**r) for r in rows], total=total[0] if total else 0, **page.model_dump()
    )


@router.post("/api/users", status_code=201)
def add_user(body: UserIn, p: Admin, conn: Conn) -> UserOut:
    """Create an account. 409: the user name is taken; 422: an unknown district, enterprise
    or project."""
    try:
        user_id = create_user(conn, body)
    except UserError as exc:
        taken = conn.execute("SELECT 1 FROM users WHERE username = %s", (body.username,))
        if taken.fetchone() is not None:
            raise ApiError(409, "conflict", f"user {body.username!r} exists") from None
        raise _invalid(str(exc)) from None
    return _user(conn, user_id)


class UserPatch(BaseModel):
    """What an admin may change on an account (role and scope kind are fixed: make a new
    account for a new role)."""

    model_config = ConfigDict(extra="forbid")

    active: bool | None = Field(None, description="False: the account can no longer log in.")
    display_name: str | None = Field(None, max_length=100)
    password: str | None = Field(None, min_length=8, max_length=200)
    projects: list[str] | None = Field(None, description="Replaces the assigned projects.")

    @model_validator(mode="after")
    def _something(self) -> UserPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


@router.patch("/api/users/{user_id}")
def edit_user(user_id: int, body: UserPatch, p: Admin, conn: Conn) -> UserOut:
    """Activate or deactivate an account, rename it, set its password or its projects."""
    with conn.transaction():
        row = conn.execute("SELECT role FROM users WHERE id = %s FOR UPDATE", (user_id,)).fetchone()
        if row is None:
            raise not_found("user")
        (role,) = row
        if body.active is False and p.kind == "user" and p.id == str(user_id):
            raise ApiError(409, "conflict", "you cannot deactivate your own account")
        if body.active is not None:
            conn.execute("UPDATE users SET active = %s WHERE id = %s", (body.active, user_id))
        if body.display_name is not None:
            conn.execute(
                "UPDATE users SET display_name = %s WHERE id = %s", (body.display_name, user_id)
            )
        if body.password is not None:
            conn.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s",
                (hash_password(body.password), user_id),
            )
        if body.projects is not None:
            if role in ("admin", "regulator") and body.projects:
                raise _invalid(f"a {role} is not limited to projects")
            unknown = sorted(
                set(body.projects)
                - {
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM projects WHERE id = ANY(%s)", (body.projects,)
                    )
                }
            )
            if unknown:
                raise _invalid(f"unknown project(s): {', '.join(unknown)}")
            conn.execute("DELETE FROM user_projects WHERE user_id = %s", (user_id,))
            for project in sorted(set(body.projects)):
                conn.execute(
                    "INSERT INTO user_projects (user_id, project_id) VALUES (%s, %s)",
                    (user_id, project),
                )
    return _user(conn, user_id)


# --- API keys ------------------------------------------------------------------------------------


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    grant: KeyGrant
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The full key: shown this once, never stored.")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Who or what uses it.")
    role: Literal["data_sharing", "integration"] = "data_sharing"
    grant: KeyGrant = Field(
        default_factory=lambda: KeyGrant(), description="What it may read; empty: the city."
    )
    expires_at: datetime | None = Field(None, description="Null: until revoked.")


_KEY_SELECT = (
    "SELECT id, name, role, grant_spec AS grant, created_by, created_at, expires_at,"
    " revoked_at, last_used_at FROM api_keys"
)


@router.get("/api/keys")
def list_api_keys(p: Admin, conn: Conn, page: Paging) -> Page[KeyOut]:
    """API keys, newest first (never their secrets)."""
    total = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _KEY_SELECT + " ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
            (page.limit, page.offset),
        ).fetchall()
    return Page(
        items=[KeyOut(**r) for r in rows], total=total[0] if total else 0, **page.model_dump()
    )


@router.post("/api/keys", status_code=201)
def create_key(body: KeyIn, request: Request, p: Admin, conn: Conn) -> KeyCreated:
    """Issue a key; the response carries the full key, which cannot be shown again."""
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise _invalid("expires_at needs a time zone")
    if body.grant.projects:
        known = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM projects WHERE id = ANY(%s)", (body.grant.projects,)
            )
        }
        unknown = sorted(set(body.grant.projects) - known)
        if unknown:
            raise _invalid(f"unknown project(s): {', '.join(unknown)}")
    district = body.grant.district
    if district is not None:
        row = conn.execute("SELECT 1 FROM districts WHERE code = %s", (district,)).fetchone()
        if row is None:
            raise _invalid(f"unknown district {district}")
    with conn.transaction():
        full = create_api_key(
            conn, request.app.state.secret_key, body.name, body.grant, by=p.label, role=body.role
        )
        key_id = full.split("_", 2)[1]
        conn.execute("UPDATE api_keys SET expires_at = %s WHERE id = %s", (body.expires_at, key_id))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_KEY_SELECT + " WHERE id = %s", (key_id,)).fetchone()
    assert row is not None
    return KeyCreated(**row, key=full)


@router.delete("/api/keys/{key_id}", status_code=204)
def revoke_api_key(key_id: str, p: Admin, conn: Conn) -> Response:
    """Revoke a key: it stops working at once (revoking it again changes nothing)."""
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING id",
        (key_id,),
    ).fetchone()
    if row is None:
        raise not_found("API key")
    return Response(status_code=204)


# --- audit ---------------------------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    at: datetime
    principal: str = Field(description='"user:<name>" or "key:<name>".')
    role: str
    method: str
    path: str
    resource: str
    records: int
    key_id: str | None = Field(None, description="The API key; null: a user.")
    query: str = Field("", description="The query string of the request.")
    fields: list[str] | None = Field(None, description="The fields read; null: all returned.")
    status: int | None = Field(None, description="The HTTP status answered.")
    personal_data: str | None = Field(None, description="How ID numbers left: masked, clear.")


@router.get("/api/audit")
def list_audit(
    p: Admin,
    conn: Conn,
    page: Paging,
    principal: Annotated[str | None, Query(max_length=200, description="Only this one.")] = None,
    resource: Annotated[str | None, Query(max_length=50, description="E.g. workers.")] = None,
    since: Annotated[datetime | None, Query(description="From this time on.")] = None,
) -> Page[AuditOut]:
    """Who read what (every API-key request; users' personal-data reads), when and how much,
    newest first."""
    where = (
        " WHERE (%(principal)s::text IS NULL OR principal = %(principal)s)"
        " AND (%(resource)s::text IS NULL OR resource = %(resource)s)"
        " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
    )
    args: dict[str, Any] = {"principal": principal, "resource": resource, "since": since}
    total = conn.execute("SELECT count(*) FROM access_audit" + where, args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, at, principal, role, method, path, resource, records, key_id, query,"
            " fields, status, personal_data FROM access_audit"
            + where
            + " ORDER BY at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**args, "limit": page.limit, "offset": page.offset},
        ).fetchall()
    return Page(
        items=[AuditOut(**r) for r in rows], total=total[0] if total else 0, **page.model_dump()
    )
