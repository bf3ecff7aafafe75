"""Registries: pydantic models at the boundary and the functions that store them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from smartsite import identifiers
from smartsite.protocol.topics import SEGMENT_PATTERN
from smartsite.secrets import fernet, keyed_hash

Ident = Annotated[str, Field(pattern=SEGMENT_PATTERN)]
Uscc = Annotated[str, AfterValidator(identifiers.validate_uscc)]
DeviceKind = Literal[
    "camera", "tower_crane", "hoist", "foundation_pit", "high_formwork", "dust", "noise", "gateway"
]
EnterpriseRole = Literal["builder", "general_contractor", "subcontractor", "supervisor"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectIn(_In):
    id: Ident = Field(description="Project code, used in topics.")
    name: str = Field(min_length=1, description="Project name.")
    address: str = Field("", description="Site address.")
    district_code: str | None = Field(None, description="Administrative division code.")
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    status: Literal["planned", "under_construction", "suspended", "completed"] = (
        "under_construction"
    )
    start_date: date | None = None
    planned_end_date: date | None = None


class PermitIn(_In):
    number: str = Field(min_length=6, max_length=40, description="施工许可证编号.")
    project_id: Ident
    issued_on: date
    expires_on: date | None = None
    status: Literal["valid", "suspended", "revoked", "expired"] = "valid"
    issuer: str = ""


class EnterpriseIn(_In):
    uscc: Uscc = Field(description="统一社会信用代码, check character validated.")
    name: str = Field(min_length=1)
    kind: str = "contractor"


class PersonIn(_In):
    # A rejected ID number must not reach logs or error replies through the error's input.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    id: Ident = Field(description="Registry id; what the edge and the API use.")
    name: str = Field(min_length=1)
    id_number: Annotated[
        SecretStr,
        AfterValidator(lambda s: SecretStr(identifiers.validate_id_number(s.get_secret_value()))),
    ] = Field(description="18-digit resident ID number; stored hashed, masked and encrypted.")
    employer_uscc: Uscc | None = None
    trade: str = Field(
        "", max_length=64, description="Trade, matched by zones' allowed_roles at the edge."
    )


class DeviceIn(_In):
    id: Ident = Field(description="Device id: topic segment and broker username.")
    project_id: Ident
    kind: DeviceKind
    name: str = ""
    gateway_id: Ident | None = Field(None, description="Gateway that publishes for it, if any.")
    rated: dict[str, float] = Field(default_factory=dict, description="Rated values.")
    placement: dict[str, Any] = Field(default_factory=dict)


def upsert_district(conn: psycopg.Connection, code: str, name: str) -> None:
    conn.execute(
        "INSERT INTO districts VALUES (%s, %s) "
        "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name",
        (code, name),
    )


def upsert_project(conn: psycopg.Connection, p: ProjectIn) -> None:
    d = p.model_dump()
    cols = list(d)
    conn.execute(
        f"INSERT INTO projects ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        f"ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id"),
        list(d.values()),
    )


def upsert_permit(conn: psycopg.Connection, p: PermitIn) -> None:
    conn.execute(
        "INSERT INTO permits (number, project_id, issued_on, expires_on, status, issuer) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (number) DO UPDATE SET "
        "expires_on = EXCLUDED.expires_on, status = EXCLUDED.status",
        (p.number, p.project_id, p.issued_on, p.expires_on, p.status, p.issuer),
    )


def upsert_enterprise(conn: psycopg.Connection, e: EnterpriseIn) -> None:
    conn.execute(
        "INSERT INTO enterprises (uscc, name, kind) VALUES (%s, %s, %s) "
        "ON CONFLICT (uscc) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind",
        (e.uscc, e.name, e.kind),
    )


def link_enterprise(
    conn: psycopg.Connection, project_id: str, uscc: str, role: EnterpriseRole
) -> None:
    conn.execute(
        "INSERT INTO project_enterprises VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (project_id, identifiers.validate_uscc(uscc), role),
    )


def upsert_person(conn: psycopg.Connection, p: PersonIn, key: bytes) -> None:
    number = p.id_number.get_secret_value()
    conn.execute(
        "INSERT INTO persons (id, name, id_number_hash, id_number_masked, id_number_encrypted, "
        "employer_uscc, trade) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
        "employer_uscc = EXCLUDED.employer_uscc, trade = EXCLUDED.trade",
        (
            p.id,
            p.name,
            keyed_hash(key, "id_number", number),
            identifiers.mask_id_number(number),
            fernet(key, "id_number").encrypt(number.encode()),
            p.employer_uscc,
            p.trade,
        ),
    )


def reveal_id_number(conn: psycopg.Connection, person_id: str, key: bytes) -> str:
    """The clear ID number, for callers whose grant allows it (they must audit the read)."""
    row = conn.execute(
        "SELECT id_number_encrypted FROM persons WHERE id = %s", (person_id,)
    ).fetchone()
    if row is None:
        raise KeyError(person_id)
    return fernet(key, "id_number").decrypt(bytes(row[0])).decode()


def upsert_device(conn: psycopg.Connection, d: DeviceIn) -> None:
    conn.execute(
        "INSERT INTO devices (id, project_id, kind, name, gateway_id, rated, placement) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "project_id = EXCLUDED.project_id, kind = EXCLUDED.kind, name = EXCLUDED.name, "
        "gateway_id = EXCLUDED.gateway_id, rated = EXCLUDED.rated, placement = EXCLUDED.placement",
        (d.id, d.project_id, d.kind, d.name, d.gateway_id, Jsonb(d.rated), Jsonb(d.placement)),
    )
