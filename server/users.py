"""User accounts and API keys: creation from the CLI and the admin API."""

from __future__ import annotations

from typing import Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.principal import KeyGrant
from server.security import hash_password, new_api_key

UserRole = Literal["admin", "regulator", "officer", "enterprise", "data_sharing"]


class UserIn(BaseModel):
    """A user account. Officers and data-sharing users see the projects listed; enterprise
    users their enterprise's projects; regulators their district (none: the whole city)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{2,100}$", description="Login name.")
    password: str = Field(min_length=8, max_length=200, description="At least 8 characters.")
    display_name: str = Field("", max_length=100)
    role: UserRole
    district_code: str | None = Field(None, description="Regulator's district.")
    enterprise_uscc: str | None = Field(None, description="Enterprise user's enterprise.")
    projects: list[str] = Field(default_factory=list, description="Officer's projects.")

    @model_validator(mode="after")
    def _scope_fits_role(self) -> UserIn:
        if self.role == "enterprise" and not self.enterprise_uscc:
            raise ValueError("an enterprise user needs enterprise_uscc")
        if self.role != "regulator" and self.district_code:
            raise ValueError("only a regulator has a district")
        if self.role in ("admin", "regulator") and self.projects:
            raise ValueError(f"a {self.role} is not limited to projects")
        return self


class UserError(ValueError):
    pass


def create_user(conn: psycopg.Connection, u: UserIn) -> int:
    with conn.transaction():
        try:
            row = conn.execute(
                "INSERT INTO users (username, password_hash, display_name, role, district_code,"
                " enterprise_uscc) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    u.username,
                    hash_password(u.password),
                    u.display_name,
                    u.role,
                    u.district_code,
                    u.enterprise_uscc,
                ),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise UserError(f"user {u.username!r} exists") from None
        except psycopg.errors.ForeignKeyViolation as exc:
            raise UserError(f"unknown district or enterprise: {exc.diag.message_detail}") from None
        assert row is not None
        for project in u.projects:
            try:
                conn.execute(
                    "INSERT INTO user_projects (user_id, project_id) VALUES (%s, %s)",
                    (row[0], project),
                )
            except psycopg.errors.ForeignKeyViolation:
                raise UserError(f"unknown project {project!r}") from None
    return int(row[0])


def create_api_key(
    conn: psycopg.Connection,
    key: bytes,
    name: str,
    grant: KeyGrant,
    *,
    by: str,
    role: Literal["data_sharing", "integration"] = "data_sharing",
) -> str:
    """Store a new key and return it in full (shown once, never stored)."""
    from psycopg.types.json import Jsonb

    key_id, full, secret_hash = new_api_key(key)
    conn.execute(
        "INSERT INTO api_keys (id, name, secret_hash, role, grant_spec, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (key_id, name, secret_hash, role, Jsonb(grant.model_dump()), by),
    )
    return full
