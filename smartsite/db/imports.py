"""Registry import: permits, enterprises and workers from CSV or JSON, all rows or none.

Every row is validated with the registry's In-models (check characters of unified social
credit codes and resident ID numbers, dates, enumerations), then its references are checked
against the database and the rest of the file. Only when every row is good are they written,
in one transaction; otherwise nothing is written and each problem is reported as
(row, field, message). An ID number is never echoed: the models hide rejected input and the
messages never repeat it.

Files
    CSV: UTF-8 with or without a BOM, a header row naming the fields; an empty cell means
    "not given". Rows are numbered as a spreadsheet shows them: the header is row 1, the
    first record row 2.
    JSON: a list of objects; the first object is row 1.

Permits (CSV and JSON share the fields)
    ``number, project_id, issued_on, expires_on, status, issuer``. The project must exist.

Enterprises
    CSV: ``uscc, name, kind, project_id, role`` -- one project link per row (repeat the
    enterprise on another row, with the same name and kind, for a further link).
    JSON: ``{"uscc", "name", "kind", "projects": [{"project_id", "role"}]}``.
    role is builder, general_contractor, subcontractor or supervisor; the project must exist.

Workers
    CSV: ``id, name, id_number, employer_uscc, trade, project_id, role, joined_on,
    certificate_type, certificate_number, certificate_issued_on, certificate_expires_on`` --
    at most one project and one certificate per row (repeat the worker for more).
    JSON: ``{"id", "name", "id_number", "employer_uscc", "trade",
    "projects": [{"project_id", "role", "joined_on"}],
    "certificates": [{"type", "number", "issued_on", "expires_on"}]}``.
    The employer must be a registered enterprise, the projects must exist, an ID number
    must not belong to another person, a certificate (type, number) not to another worker.

Dates are ISO 8601 (``2025-03-01``). Importing the same file again changes nothing (upsert).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smartsite.db.registry import (
    EnterpriseIn,
    EnterpriseRole,
    Ident,
    PermitIn,
    PersonIn,
    link_enterprise,
    upsert_enterprise,
    upsert_permit,
    upsert_person,
)
from smartsite.secrets import keyed_hash

Kind = Literal["permits", "enterprises", "workers"]
KINDS: tuple[str, ...] = get_args(Kind)


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not one row's problem)."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field or '-'}: {self.message}"


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    records: int = 0  # after rows repeating a record (for another link) are merged
    errors: list[RowError] = field(default_factory=list)
    written: bool = False


# --- row models: the registry's In-models plus the links a file may carry --------------------


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _dates_in_order(issued: date | None, expires: date | None) -> None:
    if issued and expires and expires < issued:
        raise ValueError("expires_on is before issued_on")


class PermitRow(PermitIn):
    @model_validator(mode="after")
    def _order(self) -> PermitRow:
        _dates_in_order(self.issued_on, self.expires_on)
        return self


class EnterpriseLink(_Part):
    project_id: Ident
    role: EnterpriseRole


class EnterpriseRow(EnterpriseIn):
    projects: list[EnterpriseLink] = Field(default_factory=list)


class WorkerProject(_Part):
    project_id: Ident
    role: str = Field("worker", min_length=1)
    joined_on: date | None = None


class Certificate(_Part):
    type: str = Field(min_length=1, description="e.g. special_operations:tower_crane_driver")
    number: str = Field(min_length=1)
    issued_on: date | None = None
    expires_on: date | None = None

    @model_validator(mode="after")
    def _order(self) -> Certificate:
        _dates_in_order(self.issued_on, self.expires_on)
        return self


class WorkerRow(PersonIn):
    projects: list[WorkerProject] = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)


# --- reading ---------------------------------------------------------------------------------

# CSV column -> (nested list, key in its items); the rest of the columns are top-level fields.
_CSV_NESTED: dict[str, dict[str, tuple[str, str]]] = {
    "permits": {},
    "enterprises": {"project_id": ("projects", "project_id"), "role": ("projects", "role")},
    "workers": {
        "project_id": ("projects", "project_id"),
        "role": ("projects", "role"),
        "joined_on": ("projects", "joined_on"),
        "certificate_type": ("certificates", "type"),
        "certificate_number": ("certificates", "number"),
        "certificate_issued_on": ("certificates", "issued_on"),
        "certificate_expires_on": ("certificates", "expires_on"),
    },
}
_MODELS: dict[str, type[BaseModel]] = {
    "permits": PermitRow,
    "enterprises": EnterpriseRow,
    "workers": WorkerRow,
}
_KEY_FIELD = {"permits": "number", "enterprises": "uscc", "workers": "id"}


def _csv_columns(kind: str) -> set[str]:
    top = set(_MODELS[kind].model_fields) - {"projects", "certificates"}
    return top | set(_CSV_NESTED[kind])


def read_rows(path: Path, kind: str) -> tuple[str, list[tuple[int, Any]]]:
    """(format, [(row number, nested record)]) from a CSV or JSON file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"{path}: {exc.strerror}") from None
    try:
        # utf-8-sig strips a BOM that spreadsheet programs put in front of CSV exports
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(f"{path.name}: not UTF-8 text") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        return "json", _json_rows(text, path.name)
    return "csv", _csv_rows(text, path.name, kind)


def _json_rows(text: str, name: str) -> list[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"{name}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, list):
        raise ImportFileError(f"{name}: JSON must be a list of objects")
    # a non-object is reported by the model ("valid dictionary") for its row, not the file
    return list(enumerate(data, start=1))


def _csv_rows(text: str, name: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ImportFileError(f"{name}: empty file, a header row is needed")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in _csv_columns(kind)]
    if unknown:
        raise ImportFileError(
            f"{name}: unknown column(s) {', '.join(unknown)}; "
            f"{kind} columns are {', '.join(sorted(_csv_columns(kind)))}"
        )
    nested = _CSV_NESTED[kind]
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # blank lines (often trailing) are not records
        record: dict[str, Any] = {}
        parts: dict[str, dict[str, str]] = defaultdict(dict)
        for col, cell in zip(header, cells, strict=False):
            value = cell.strip()
            if not value:
                continue  # empty cell: not given, so the model's default applies
            if col in nested:
                group, key = nested[col]
                parts[group][key] = value
            else:
                record[col] = value
        for group, item in parts.items():
            record[group] = [item]
        if len(cells) > len(header):
            record["__extra_cells__"] = len(cells) - len(header)
        rows.append((number, record))
    return rows


# --- validating ------------------------------------------------------------------------------


def _field_name(kind: str, fmt: str, loc: Sequence[int | str]) -> str:
    """The field as the file names it: a CSV column, or a JSON path like projects[0].role."""
    if fmt == "csv" and len(loc) >= 3 and isinstance(loc[1], int):
        for col, (group, key) in _CSV_NESTED[kind].items():
            if (group, key) == (loc[0], loc[2]):
                return col
    if fmt == "csv" and len(loc) == 2 and isinstance(loc[1], int):
        # an error about the whole nested item (e.g. dates out of order) in CSV form
        prefix = "certificate" if loc[0] == "certificates" else "project"
        return f"{prefix} columns"
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate(
    kind: str, fmt: str, rows: Iterable[tuple[int, Any]], report: ImportReport
) -> list[tuple[int, Any]]:
    model = _MODELS[kind]
    good: list[tuple[int, Any]] = []
    for number, record in rows:
        report.rows += 1
        if isinstance(record, dict) and "__extra_cells__" in record:
            report.errors.append(RowError(number, "", "more cells than header columns"))
            continue
        try:
            good.append((number, model.model_validate(record)))
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                msg = err["msg"].removeprefix("Value error, ")
                report.errors.append(RowError(number, _field_name(kind, fmt, err["loc"]), msg))
    return good


def _merge_same_key(
    kind: str, rows: list[tuple[int, Any]], report: ImportReport
) -> list[tuple[int, Any]]:
    """Rows of the same record (a CSV repeats it for another link) become one record; rows
    that disagree on the record's own fields are an error, not a silent last-one-wins."""
    key = _KEY_FIELD[kind]
    merged: dict[str, tuple[int, Any]] = {}
    lists = [n for n in ("projects", "certificates") if n in _MODELS[kind].model_fields]
    for number, item in rows:
        k = getattr(item, key)
        if k not in merged:
            merged[k] = (number, item)
            continue
        first_row, first = merged[k]
        own = set(type(item).model_fields) - set(lists)
        differing = sorted(f for f in own if getattr(first, f) != getattr(item, f))
        if not lists or differing:
            what = f", differing in {', '.join(differing)}" if differing else ""
            report.errors.append(RowError(number, key, f"duplicate of row {first_row}{what}"))
            continue
        update = {n: [*getattr(first, n), *getattr(item, n)] for n in lists}
        merged[k] = (first_row, first.model_copy(update=update))
    return list(merged.values())


def _existing(conn: psycopg.Connection, sql: str, values: Iterable[str]) -> set[str]:
    wanted = sorted(set(values))
    if not wanted:
        return set()
    return {r[0].strip() for r in conn.execute(sql, (wanted,)).fetchall()}


def _check_references(
    conn: psycopg.Connection,
    kind: str,
    fmt: str,
    rows: list[tuple[int, Any]],
    report: ImportReport,
    key: bytes | None,
) -> None:
    projects = _existing(
        conn,
        "SELECT id FROM projects WHERE id = ANY(%s)",
        [r.project_id for _, r in rows if kind == "permits"]
        + [p.project_id for _, r in rows if kind != "permits" for p in r.projects],
    )

    def project(number: int, field_name: str, project_id: str) -> None:
        if project_id not in projects:
            report.errors.append(RowError(number, field_name, f"unknown project {project_id!r}"))

    for number, r in rows:
        if kind == "permits":
            project(number, "project_id", r.project_id)
        else:
            for i, p in enumerate(r.projects):
                project(number, _field_name(kind, fmt, ("projects", i, "project_id")), p.project_id)
    if kind != "workers":
        return
    assert key is not None
    employers = _existing(
        conn,
        "SELECT uscc FROM enterprises WHERE uscc = ANY(%s)",
        [r.employer_uscc for _, r in rows if r.employer_uscc],
    )
    # rows are not merged yet: a CSV may repeat a worker, which is not a duplicate person
    seen_numbers: dict[bytes, tuple[int, str]] = {}
    seen_certs: dict[tuple[str, str], tuple[int, str]] = {}
    for number, r in rows:
        if r.employer_uscc and r.employer_uscc not in employers:
            report.errors.append(
                RowError(number, "employer_uscc", "no registered enterprise has this code")
            )
        # the keyed hash finds the same person without handling the clear number further
        digest = keyed_hash(key, "id_number", r.id_number.get_secret_value())
        first_row, first_id = seen_numbers.setdefault(digest, (number, r.id))
        if first_id != r.id:
            report.errors.append(
                RowError(number, "id_number", f"same ID number as row {first_row}")
            )
        owner = conn.execute(
            "SELECT id FROM persons WHERE id_number_hash = %s AND id <> %s", (digest, r.id)
        ).fetchone()
        if owner:
            report.errors.append(
                RowError(number, "id_number", f"already registered to person {owner[0]!r}")
            )
        for i, c in enumerate(r.certificates):
            where = _field_name(kind, fmt, ("certificates", i, "number"))
            first_row, first_id = seen_certs.setdefault((c.type, c.number), (number, r.id))
            if first_id != r.id:
                report.errors.append(
                    RowError(number, where, f"same certificate as row {first_row}")
                )
            holder = conn.execute(
                "SELECT person_id FROM certificates WHERE type = %s AND number = %s "
                "AND person_id <> %s",
                (c.type, c.number, r.id),
            ).fetchone()
            if holder:
                report.errors.append(
                    RowError(number, where, f"certificate belongs to person {holder[0]!r}")
                )


# --- writing ---------------------------------------------------------------------------------


def _write_permit(conn: psycopg.Connection, r: PermitRow, key: bytes | None) -> None:
    upsert_permit(conn, r)


def _write_enterprise(conn: psycopg.Connection, r: EnterpriseRow, key: bytes | None) -> None:
    upsert_enterprise(conn, r)
    for p in r.projects:
        link_enterprise(conn, p.project_id, r.uscc, p.role)


def _write_worker(conn: psycopg.Connection, r: WorkerRow, key: bytes | None) -> None:
    assert key is not None
    upsert_person(conn, r, key)
    for p in r.projects:
        conn.execute(
            "INSERT INTO project_workers (project_id, person_id, role, joined_on) "
            "VALUES (%s, %s, %s, COALESCE(%s, current_date)) "
            "ON CONFLICT (project_id, person_id) DO UPDATE SET role = EXCLUDED.role, "
            # an import without a date must not move the day someone joined
            "joined_on = COALESCE(%s, project_workers.joined_on)",
            (p.project_id, r.id, p.role, p.joined_on, p.joined_on),
        )
    for c in r.certificates:
        conn.execute(
            "INSERT INTO certificates (person_id, type, number, issued_on, expires_on) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (type, number) DO UPDATE SET "
            "issued_on = EXCLUDED.issued_on, expires_on = EXCLUDED.expires_on "
            "WHERE certificates.person_id = EXCLUDED.person_id",
            (r.id, c.type, c.number, c.issued_on, c.expires_on),
        )


_WRITERS: dict[str, Callable[[psycopg.Connection, Any, bytes | None], None]] = {
    "permits": _write_permit,
    "enterprises": _write_enterprise,
    "workers": _write_worker,
}


def import_file(
    conn: psycopg.Connection,
    kind: str,
    path: Path,
    *,
    key: bytes | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Validate ``path`` and, if every row is good and not ``dry_run``, write all of it in
    one transaction. ``key`` (the hub's secret key) is needed for workers. Raises
    ImportFileError for a file that cannot be read at all."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if kind == "workers" and key is None:
        raise ValueError("importing workers needs the secret key")
    report = ImportReport(kind)
    fmt, records = read_rows(path, kind)
    valid = _validate(kind, fmt, records, report)
    _check_references(conn, kind, fmt, valid, report, key)
    rows = _merge_same_key(kind, valid, report)
    report.records = len(rows)
    report.errors.sort(key=lambda e: e.row)
    if report.errors or dry_run:
        return report
    write = _WRITERS[kind]
    with conn.transaction():
        for _, r in rows:
            write(conn, r, key)
    report.written = True
    return report
