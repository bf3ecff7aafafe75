"""``smartsite export`` (bulk CSV / Parquet exports) and ``smartsite data-quality`` (the
registries' data-quality report), for operators: the whole city unless narrowed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from server.principal import Principal
from smartsite.cli_support import console, database, settings_or_exit, wide

# One command each, as sub-apps (a callback that runs without a subcommand); options may
# follow the DATASET argument.
export_app = typer.Typer(
    help="Bulk exports (CSV, Parquet) of the registries and alerts.",
    context_settings={"allow_interspersed_args": True},
)
quality_app = typer.Typer(help="The registries' data-quality report.")

ProjectsOpt = Annotated[
    list[str] | None, typer.Option("--project", help="Only this project (repeatable).")
]


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        console.print(f"[red]{what}: {escape(value)} is not an ISO date or date-time[/red]")
        raise typer.Exit(2) from None


def _operator(projects: list[str] | None) -> Principal:
    return Principal(
        kind="user",
        id="cli",
        name="cli",
        role="admin",
        project_ids=frozenset(projects) if projects else None,
    )


@export_app.callback(invoke_without_command=True)
def export(
    dataset: Annotated[str, typer.Argument(help="projects, permits, alerts or credit.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    since: Annotated[
        str | None, typer.Option(help="From this ISO date/time on (no zone: the hub's).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Before this ISO date/time (exclusive).")
    ] = None,
    project: ProjectsOpt = None,
) -> None:
    """Write DATASET for a date range to --out (projects by registration, permits by issue,
    alerts by creation, credit records by occurrence)."""
    from server import exports
    from server.principal import SHARED_FIELDS
    from server.sharing.datasets import DATASETS, stream_rows

    if dataset not in exports.EXPORT_DATASETS:
        console.print(f"[red]dataset must be one of {', '.join(exports.EXPORT_DATASETS)}[/red]")
        raise typer.Exit(2)
    if fmt not in ("csv", "parquet"):
        console.print("[red]--format must be csv or parquet[/red]")
        raise typer.Exit(2)
    start, end = _when(since, "--since"), _when(until, "--until")
    settings = settings_or_exit()
    tz = ZoneInfo(settings.alerts_timezone)
    fields = SHARED_FIELDS[dataset]
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for r in stream_rows(
            conn, DATASETS[dataset], _operator(project), since=start, until=end, tz=tz
        ):
            count += 1
            yield r

    tmp = out.with_name(f".{out.name}.part")
    with database(settings) as conn, tmp.open("wb") as f:
        exports.write_export(f.write, dataset, fmt, fields, rows())
    tmp.replace(out)
    console.print(f"{count} {dataset} record(s) written to {escape(str(out))} ({fmt})")


@quality_app.callback(invoke_without_command=True)
def data_quality(
    silent_minutes: Annotated[
        int | None, typer.Option(help="Silent after N minutes, any kind (default: per kind).")
    ] = None,
    zone_days: Annotated[int, typer.Option(help="Workers seen in zones over N days.")] = 30,
    project: ProjectsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Print the problems found in the registries, one table a kind of problem."""
    from server.sharing.quality import quality_report
    from smartsite.secrets import secret_key

    settings = settings_or_exit()
    now = datetime.now(ZoneInfo(settings.alerts_timezone))
    with database(settings) as conn:
        report = quality_report(
            conn,
            pids=sorted(project) if project else None,
            own_enterprise=None,
            key=secret_key(settings),
            now=now,
            today=now.date(),
            silent_minutes=silent_minutes,
            zone_days=zone_days,
        )
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    out = wide(console)
    summary = Table(title=f"data quality ({now.astimezone(UTC).isoformat(timespec='seconds')})")
    summary.add_column("check")
    summary.add_column("problems", justify="right")
    for name, n in report.summary.model_dump().items():
        summary.add_row(name.replace("_", " "), f"[red]{n}[/red]" if n else "0")
    out.print(summary)
    sections = (
        "projects_without_valid_permit",
        "enterprises_with_invalid_codes",
        "persons_with_invalid_id_numbers",
        "silent_devices",
        "projects_without_bim",
        "workers_missing_certificates",
    )
    for section in sections:
        items = getattr(report, section)
        if not items:
            continue
        t = Table(title=section.replace("_", " "))
        columns = list(type(items[0]).model_fields)
        for c in columns:
            t.add_column(c)
        for item in items:
            t.add_row(*(escape("" if v is None else str(v)) for v in item.model_dump().values()))
        out.print(t)
