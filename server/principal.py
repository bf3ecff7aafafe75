"""Who is asking and what they may see: a user (by token) or an API key, with the set of
projects in their scope. Every query filters on that set (``in_scope``)."""

from __future__ import annotations

from typing import Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from alerts.lifecycle import Actor

Role = Literal["admin", "regulator", "officer", "enterprise", "data_sharing", "integration"]
READ_ONLY_ROLES: frozenset[str] = frozenset({"data_sharing"})


class KeyGrant(BaseModel):
    """What an API key may read. Projects and district narrow each other; neither: the city."""

    model_config = ConfigDict(extra="forbid")

    projects: list[str] | None = Field(None, description="Only these projects.")
    district: str | None = Field(None, description="Only projects of this district code.")


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["user", "key"]
    id: str
    name: str
    role: Role
    district: str | None = None
    enterprise_uscc: str | None = None
    project_ids: frozenset[str] | None = Field(
        description="The projects in scope; None: every project."
    )

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def pids(self) -> list[str] | None:
        """The scope as a query parameter for ``in_scope``."""
        return None if self.project_ids is None else sorted(self.project_ids)

    def sees(self, project_id: str) -> bool:
        return self.project_ids is None or project_id in self.project_ids

    def actor(self) -> Actor:
        return Actor(name=self.name, role="data_sharing" if self.kind == "key" else self.role)


def in_scope(column: str) -> str:
    """SQL condition: ``column`` is one of the principal's projects (param ``pids``)."""
    return f"(%(pids)s::text[] IS NULL OR {column} = ANY(%(pids)s::text[]))"


def _ids(conn: psycopg.Connection, query: str, *args: object) -> frozenset[str]:
    return frozenset(r[0] for r in conn.execute(query, args).fetchall())


def user_projects(
    conn: psycopg.Connection,
    user_id: int,
    role: str,
    district: str | None,
    enterprise: str | None,
) -> frozenset[str] | None:
    if role == "admin" or (role == "regulator" and district is None):
        return None
    if role == "regulator":
        return _ids(conn, "SELECT id FROM projects WHERE district_code = %s", district)
    own = _ids(conn, "SELECT project_id FROM user_projects WHERE user_id = %s", user_id)
    if role == "enterprise" and enterprise:
        own |= _ids(conn, "SELECT project_id FROM project_enterprises WHERE uscc = %s", enterprise)
    return own


def key_projects(conn: psycopg.Connection, grant: KeyGrant) -> frozenset[str] | None:
    if grant.projects is None and grant.district is None:
        return None
    rows = conn.execute(
        "SELECT id FROM projects WHERE (%(d)s::text IS NULL OR district_code = %(d)s)"
        " AND (%(p)s::text[] IS NULL OR id = ANY(%(p)s::text[]))",
        {"d": grant.district, "p": grant.projects},
    ).fetchall()
    return frozenset(r[0] for r in rows)
