"""Field-level permissions of data-sharing keys, enforced in one place.

``shape_rows`` is applied to every row a sharing endpoint or an export returns: for a key it
refuses a dataset outside the grant (403), keeps only the fields the grant allows, decrypts
resident ID numbers only where the grant says ``personal_data: clear`` (masked otherwise) and
drops anything that is not a catalogued field (columns named ``_…`` carry what is needed to
compute a field, faces and embeddings are never catalogued). It also declares to the audit
what was read (resource, fields, records).

``gate_key_route`` keeps keys with an explicit ``resources`` list off the other routes for
datasets they were not granted, and off routes of datasets whose fields they may see only in
part (those go through /api/sharing and /api/exports, which filter fields).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.fernet import InvalidToken
from fastapi import Request

from server.errors import forbidden
from server.principal import SHARED_FIELDS, Principal
from smartsite.identifiers import mask_id_number
from smartsite.secrets import fernet

# Fields that never leave, whatever a grant or a query says.
NEVER_SHARED = frozenset(
    {"face", "faces", "face_embedding", "embedding", "embeddings", "face_image", "photo"}
)

# Paths of the other routes by the dataset they read ("" for routes no key may use once it
# has an explicit resources list: they read nothing a grant names).
_ROUTE_RESOURCES: tuple[tuple[re.Pattern[str], str | None], ...] = tuple(
    (re.compile(pattern), resource)
    for pattern, resource in (
        (r"^/api/(sharing|exports|data-quality)(/|$)", None),  # they check themselves
        (r"^/api/(health|auth)(/|$)", None),
        (r"^/(healthz|readyz)$", None),
        (r"^/api/projects/[^/]+/workers$", "workers"),
        (r"^/api/projects/[^/]+/attendance$", "attendance"),
        (r"^/api/projects/[^/]+/permits$", "permits"),
        (r"^/api/projects/[^/]+/enterprises$", "enterprises"),
        (r"^/api/projects/[^/]+/devices$", "devices"),
        (r"^/api/projects/[^/]+/(series-catalog|dashboard)$", "telemetry"),
        (r"^/api/devices/[^/]+/telemetry$", "telemetry"),
        (r"^/api/projects(/[^/]+)?$", "projects"),
        (r"^/api/enterprises/[^/]+/credit$", "credit"),
        (r"^/api/workers/[^/]+/credit$", "credit"),
        (r"^/api/credit(/|$)", "credit"),
        (r"^/api/enterprises(/[^/]+)?$", "enterprises"),
        (r"^/api/(alerts|stats)(/|$)", "alerts"),
    )
)


def route_resource(path: str) -> tuple[bool, str | None]:
    """(known, dataset) of a path: known False for a route no rule above names."""
    for pattern, resource in _ROUTE_RESOURCES:
        if pattern.search(path):
            return True, resource
    return False, None


def gate_key_route(request: Request, p: Principal) -> None:
    """403 for a key whose grant lists resources, on a route outside them (keys with no
    resources list keep the behaviour they always had)."""
    grant = p.grant
    if grant is None or grant.resources is None:
        return
    known, resource = route_resource(request.url.path)
    if known and resource is None:
        return
    if not known:
        raise forbidden("this key's grant does not cover this route")
    assert resource is not None
    if not grant.allows(resource):
        raise forbidden(f"this key's grant does not include {resource}")
    if resource in grant.fields:
        raise forbidden(
            f"this key may see only some fields of {resource}: read them through"
            f" /api/sharing/{resource}"
        )


def require_resource(p: Principal, resource: str) -> tuple[str, ...]:
    """The fields of ``resource`` the caller may see; 403 for a key without the resource."""
    if resource not in SHARED_FIELDS:
        raise ValueError(f"unknown resource {resource}")
    if p.grant is None:
        return SHARED_FIELDS[resource]
    if not p.grant.allows(resource):
        raise forbidden(f"this key's grant does not include {resource}")
    return p.grant.fields_of(resource)


def declare_access(
    request: Request, resource: str, fields: Iterable[str], records: int, personal: str = ""
) -> dict[str, Any]:
    """Tell the audit what this request read (it writes one row when the response ends).
    The returned dict may be updated while a response streams (records so far)."""
    access = {
        "resource": resource,
        "fields": list(fields),
        "records": records,
        "personal_data": personal,
    }
    request.state.access = access
    return access


class RowShaper:
    """What ``shape_rows`` does, for rows that come one at a time (exports)."""

    def __init__(self, request: Request, p: Principal, resource: str) -> None:
        self.fields = require_resource(p, resource)
        self.clear = p.grant is not None and p.grant.personal_data == "clear"
        self._key: bytes = request.app.state.secret_key
        personal = ""
        if "id_number" in self.fields:
            personal = "clear" if self.clear else "masked"
        self.access = declare_access(request, resource, self.fields, 0, personal)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {f: row.get(f) for f in self.fields if f not in NEVER_SHARED}
        if "id_number" in out:
            out["id_number"] = self._id_number(row)
        self.access["records"] += 1
        return out

    def _id_number(self, row: dict[str, Any]) -> str | None:
        encrypted = row.get("_id_number_encrypted")
        masked = row.get("_id_number_masked")
        if self.clear and encrypted is not None:
            try:
                return fernet(self._key, "id_number").decrypt(bytes(encrypted)).decode()
            except InvalidToken:
                return None  # encrypted under another key: nothing to show in clear
        if masked is not None:
            return str(masked).strip()
        if encrypted is not None:  # no masked form at hand: make one, never the clear number
            try:
                clear = fernet(self._key, "id_number").decrypt(bytes(encrypted)).decode()
            except InvalidToken:
                return None
            return mask_id_number(clear)
        return None


def shape_rows(
    request: Request, p: Principal, resource: str, rows: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows as the caller may see them (see the module doc); declares the read."""
    shaper = RowShaper(request, p, resource)
    return [shaper(r) for r in rows]


def shape_iter(shaper: RowShaper, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for r in rows:
        yield shaper(r)
