"""``smartsite import``: permits, enterprises and workers from CSV or JSON, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from smartsite.cli_support import console, database, or_exit, settings_or_exit

app = typer.Typer(
    help="Import registries (permits, enterprises, workers) from CSV or JSON.",
    no_args_is_help=True,
)

_COMMON = (
    "CSV: UTF-8 (a BOM is fine), a header row naming the fields, empty cell = not given; "
    "rows are numbered as in a spreadsheet (header = row 1). JSON: a list of objects "
    "(first = row 1). Every row is checked first; if any is bad, nothing is imported, "
    "each problem is listed as row, field and message, and the exit status is 1. "
    "Importing the same file again changes nothing."
)
File = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="CSV or JSON file (.json, or content starting with '[').", exists=True
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Validate and check references only; write nothing.")
]


def _run(kind: str, file: Path, dry_run: bool) -> None:
    from smartsite.db.imports import ImportFileError, import_file
    from smartsite.secrets import secret_key

    settings = settings_or_exit()
    key = secret_key(settings) if kind == "workers" else None
    with database(settings) as conn:
        report = or_exit(
            lambda: import_file(conn, kind, file, key=key, dry_run=dry_run), ImportFileError
        )
    if report.errors:
        # messages never carry an ID number: the models hide rejected input
        for err in report.errors:
            console.print(f"[red]{escape(str(err))}[/red]")
        bad = len({e.row for e in report.errors})
        console.print(
            f"[red]{escape(file.name)}: {bad} of {report.rows} row(s) bad; nothing imported[/red]"
        )
        raise typer.Exit(1)
    if dry_run:
        console.print(
            f"{escape(file.name)}: {report.rows} row(s) valid, {report.records} {kind} (dry run)"
        )
    else:
        console.print(
            f"{escape(file.name)}: imported {report.records} {kind} from {report.rows} row(s)"
        )


@app.command(
    "permits",
    epilog=f"Fields: number, project_id, issued_on, expires_on, status "
    f"(valid|suspended|revoked|expired), issuer. The project must exist. {_COMMON}",
)
def permits(file: File, dry_run: DryRun = False) -> None:
    """Import construction permits (施工许可证)."""
    _run("permits", file, dry_run)


@app.command(
    "enterprises",
    epilog="CSV columns: uscc, name, kind, project_id, role (one project link per row; repeat "
    "the enterprise for more). JSON: {uscc, name, kind, projects: [{project_id, role}]}. "
    "role: builder|general_contractor|subcontractor|supervisor; the unified social credit "
    f"code's check character is verified; projects must exist. {_COMMON}",
)
def enterprises(file: File, dry_run: DryRun = False) -> None:
    """Import enterprises (统一社会信用代码) and their roles on projects."""
    _run("enterprises", file, dry_run)


@app.command(
    "workers",
    epilog="CSV columns: id, name, id_number, employer_uscc, trade, project_id, role, "
    "joined_on, certificate_type, certificate_number, certificate_issued_on, "
    "certificate_expires_on (one project and one certificate per row; repeat the worker for "
    "more). JSON: {id, name, id_number, employer_uscc, trade, projects: [{project_id, role, "
    "joined_on}], certificates: [{type, number, issued_on, expires_on}]}. The ID number's "
    "check digit is verified and it is stored hashed, masked and encrypted, never in clear; "
    f"the employer must be a registered enterprise and projects must exist. {_COMMON}",
)
def workers(file: File, dry_run: DryRun = False) -> None:
    """Import workers with their employer, projects and certificates."""
    _run("workers", file, dry_run)
