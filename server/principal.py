"""Who is asking and what they may see: a user (by token) or an API key, with the set of
projects in their scope. Every query filters on that set (``in_scope``)."""

from __future__ import annotations

from typing import Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.lifecycle import Actor

Role = Literal["admin", "regulator", "officer", "enterprise", "data_sharing", "integration"]
READ_ONLY_ROLES: frozenset[str] = frozenset({"data_sharing"})


# The datasets a data-sharing key may be granted and the fields of each that can be shared
# (the rows of /api/sharing/* and /api/exports/*). Faces, face embeddings and evidence images
# are not among them: they never leave the hub, whatever a grant says.
SHARED_FIELDS: dict[str, tuple[str, ...]] = {
    "projects": (
        "id",
        "name",
        "address",
        "district_code",
        "status",
        "latitude",
        "longitude",
        "start_date",
        "planned_end_date",
        "completed_date",
        "created_at",
    ),
    "permits": ("number", "project_id", "issued_on", "expires_on", "status", "issuer"),
    "enterprises": (
        "uscc",
        "name",
        "kind",
        "credit_score",
        "credit_grade",
        "blacklisted",
        "projects",
    ),
    "workers": (
        "person_id",
        "name",
        "id_number",
        "employer_uscc",
        "trade",
        "status",
        "project_id",
        "role",
        "joined_on",
        "left_on",
        "certificates",
    ),
    "attendance": ("time", "project_id", "device_id", "person_id", "direction", "similarity"),
    "alerts": (
        "id",
        "created_at",
        "project_id",
        "device_id",
        "source",
        "rule",
        "severity",
        "status",
        "zone",
        "detail",
        "unpermitted_work",
    ),
    "credit": (
        "id",
        "subject",
        "uscc",
        "person_id",
        "kind",
        "category",
        "severity",
        "points",
        "reason",
        "source",
        "occurred_at",
        "recorded_at",
    ),
    "telemetry": ("time", "project_id", "device_id", "metric", "value", "unit"),
    "devices": ("id", "project_id", "kind", "name", "active", "last_seen"),
}
Resource = Literal[
    "projects",
    "permits",
    "enterprises",
    "workers",
    "attendance",
    "alerts",
    "credit",
    "telemetry",
    "devices",
]


class KeyGrant(BaseModel):
    """What an API key may read. Projects and district narrow each other; neither: the city.

    ``resources`` names the datasets it may read (None: every dataset, as keys issued before
    grants had resources); ``fields`` narrows a dataset to an allow-list of its fields (absent:
    all of them); ``personal_data`` "clear" lets resident ID numbers leave decrypted, else
    they leave masked. Faces and face embeddings never leave."""

    model_config = ConfigDict(extra="forbid")

    projects: list[str] | None = Field(None, description="Only these projects.")
    district: str | None = Field(None, description="Only projects of this district code.")
    resources: list[Resource] | None = Field(
        None, description="The datasets it may read; null: every dataset."
    )
    fields: dict[Resource, list[str]] = Field(
        default_factory=dict, description="Per dataset, the only fields it may see."
    )
    personal_data: Literal["masked", "clear"] = Field(
        "masked", description="clear: resident ID numbers decrypted; masked: never in clear."
    )

    @model_validator(mode="after")
    def _fields_known(self) -> KeyGrant:
        for resource, names in self.fields.items():
            if self.resources is not None and resource not in self.resources:
                raise ValueError(f"fields given for {resource}, which is not in resources")
            unknown = sorted(set(names) - set(SHARED_FIELDS[resource]))
            if unknown:
                raise ValueError(f"unknown {resource} field(s): {', '.join(unknown)}")
        return self

    def allows(self, resource: str) -> bool:
        return self.resources is None or resource in self.resources

    def fields_of(self, resource: str) -> tuple[str, ...]:
        """The fields of ``resource`` this grant lets through (in catalogue order)."""
        allowed = self.fields.get(resource)  # type: ignore[call-overload]
        return tuple(f for f in SHARED_FIELDS[resource] if allowed is None or f in allowed)


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
    grant: KeyGrant | None = Field(None, description="An API key's grant; None: a user.")

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
