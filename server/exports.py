"""Bulk exports (CSV and Parquet) of projects, permits, alerts and credit records for a date
range, scoped to the caller and, for keys, narrowed to the grant's fields.

The date range applies to each dataset's own date (``EXPORT_DATES``): ``since`` inclusive,
``until`` exclusive. Rows come from a server-side cursor and leave in chunks (CSV: every few
thousand rows; Parquet: a row group at a time), so an export of any size stays small in
memory. Used by ``GET /api/exports/{dataset}`` and ``smartsite export``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

ExportDataset = Literal["projects", "permits", "alerts", "credit"]
ExportFormat = Literal["csv", "parquet"]
EXPORT_DATASETS: tuple[str, ...] = ("projects", "permits", "alerts", "credit")
EXPORT_DATES = {
    "projects": "created_at (registered)",
    "permits": "issued_on",
    "alerts": "created_at",
    "credit": "occurred_at",
}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}

_TS = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, dict[str, pa.DataType]] = {
    "projects": {
        "id": pa.string(),
        "name": pa.string(),
        "address": pa.string(),
        "district_code": pa.string(),
        "status": pa.string(),
        "latitude": pa.float64(),
        "longitude": pa.float64(),
        "start_date": pa.date32(),
        "planned_end_date": pa.date32(),
        "completed_date": pa.date32(),
        "created_at": _TS,
    },
    "permits": {
        "number": pa.string(),
        "project_id": pa.string(),
        "issued_on": pa.date32(),
        "expires_on": pa.date32(),
        "status": pa.string(),
        "issuer": pa.string(),
    },
    "alerts": {
        "id": pa.string(),
        "created_at": _TS,
        "project_id": pa.string(),
        "device_id": pa.string(),
        "source": pa.string(),
        "rule": pa.string(),
        "severity": pa.string(),
        "status": pa.string(),
        "zone": pa.string(),
        "detail": pa.string(),
        "unpermitted_work": pa.bool_(),
    },
    "credit": {
        "id": pa.int64(),
        "subject": pa.string(),
        "uscc": pa.string(),
        "person_id": pa.string(),
        "kind": pa.string(),
        "category": pa.string(),
        "severity": pa.string(),
        "points": pa.float64(),
        "reason": pa.string(),
        "source": pa.string(),
        "occurred_at": _TS,
        "recorded_at": _TS,
    },
}


def file_name(dataset: str, fmt: str, since: datetime | None, until: datetime | None) -> str:
    def part(t: datetime | None) -> str:
        return t.date().isoformat() if t else "all"

    return f"{dataset}_{part(since)}_{part(until)}.{fmt}"


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False, default=str)
    return v


def csv_chunks(
    fields: tuple[str, ...], rows: Iterable[dict[str, Any]], *, every: int = 2000
) -> Iterator[bytes]:
    """UTF-8 CSV with a header row (and a BOM, so spreadsheet programs read the Chinese)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    buf.write("\ufeff")
    w.writerow(fields)
    for n, r in enumerate(rows, 1):
        w.writerow([_csv_value(r.get(f)) for f in fields])
        if n % every == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file that hands what was written to whoever drains it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def parquet_schema(dataset: str, fields: tuple[str, ...]) -> pa.Schema:
    types = ARROW_TYPES[dataset]
    return pa.schema([pa.field(f, types.get(f, pa.string())) for f in fields])


def parquet_chunks(
    dataset: str,
    fields: tuple[str, ...],
    rows: Iterable[dict[str, Any]],
    *,
    row_group: int = 10_000,
) -> Iterator[bytes]:
    schema = parquet_schema(dataset, fields)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        batch: list[dict[str, Any]] = []
        for r in rows:
            batch.append(r)
            if len(batch) >= row_group:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch.clear()
                yield sink.drain()
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    finally:
        writer.close()
    yield sink.drain()


def chunks(
    dataset: str, fmt: str, fields: tuple[str, ...], rows: Iterable[dict[str, Any]]
) -> Iterator[bytes]:
    if fmt == "csv":
        return csv_chunks(fields, rows)
    return parquet_chunks(dataset, fields, rows)


def write_export(
    out: Callable[[bytes], Any],
    dataset: str,
    fmt: str,
    fields: tuple[str, ...],
    rows: Iterable[dict[str, Any]],
) -> None:
    for chunk in chunks(dataset, fmt, fields, rows):
        out(chunk)
