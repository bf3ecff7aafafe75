"""``smartsite credit``: enterprise and personnel credit (records, blacklist, scores)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from smartsite.cli_support import console, database, or_exit, settings_or_exit, wide

if TYPE_CHECKING:
    from alerts.credit import CreditScore

app = typer.Typer(
    help="Enterprise and personnel credit: records, blacklist, scores.", no_args_is_help=True
)

UsccOpt = Annotated[
    str | None, typer.Option("--uscc", help="The enterprise's unified social credit code.")
]
PersonOpt = Annotated[str | None, typer.Option("--person", help="The person's registry id.")]


def _when(value: str | None, what: str) -> datetime | None:
    """An ISO date or date-time; without a zone it is UTC (the CLI is an operator's tool)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        console.print(f"[red]{what}: {escape(value)!s} is not an ISO date or date-time[/red]")
        raise typer.Exit(2) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _print(s: CreditScore) -> None:
    out = wide(console)
    flag = " [red]BLACKLISTED[/red]" if s.blacklisted else ""
    out.print(
        f"{s.subject} [bold]{escape(s.id)}[/bold]: score {s.score:.1f}, grade {s.grade}{flag} "
        f"(as of {s.as_of.isoformat(timespec='seconds')})"
    )
    out.print(f"rule: {escape(s.rule)}")
    if s.records:
        # one line a record (not a table): readable in logs and narrow terminals, greppable
        out.print("records (newest first): points x weight now = weighted points")
        for r in s.records:
            what = f"{r.kind} {r.category}" + (f"/{r.severity}" if r.severity else "")
            out.print(
                f"  #{r.id} {r.occurred_at.date().isoformat()} {what}: {r.points:g} x "
                f"{r.weight:.3f} = {r.weighted_points:+.2f} ({escape(r.reason)}; "
                f"source {escape(r.source or '-')}, by {escape(r.recorded_by)})"
            )
    else:
        out.print("no credit records: the base score")
    for e in s.blacklist:
        end = e.ends_at.isoformat(timespec="seconds") if e.ends_at else "open-ended"
        state = "active" if e.active else "not active"
        out.print(
            f"blacklist {e.id} ({state}): {e.starts_at.isoformat(timespec='seconds')} → {end}: "
            f"{escape(e.reason)}"
        )


@app.command(
    "recompute",
    epilog="Scores are computed from the credit records and blacklist entries and stored on "
    "the registry (what alert correlation reads). Recomputing is idempotent.",
)
def recompute(uscc: UsccOpt = None, person: PersonOpt = None) -> None:
    """Recompute and store credit scores: one subject, or every enterprise and person."""
    from alerts import credit

    settings = settings_or_exit()
    policy = credit.Policy.from_settings(settings)
    with database(settings) as conn:
        scores = or_exit(
            lambda: credit.recompute(conn, uscc=uscc, person_id=person, policy=policy),
            credit.CreditError,
        )
    low = sum(1 for s in scores if s.grade in ("C", "D"))
    console.print(f"recomputed {len(scores)} score(s); {low} graded C or D")


@app.command("show")
def show(
    uscc: Annotated[
        str | None,
        typer.Argument(metavar="USCC", help="The enterprise's unified social credit code."),
    ] = None,
    person: PersonOpt = None,
) -> None:
    """Show a score, its grade, blacklist entries and the records that make it (as of now)."""
    from alerts import credit

    settings = settings_or_exit()
    with database(settings) as conn:
        s = or_exit(
            lambda: credit.explain(
                conn, uscc=uscc, person_id=person, policy=credit.Policy.from_settings(settings)
            ),
            credit.CreditError,
        )
    _print(s)


@app.command("record")
def record(
    kind: Annotated[str, typer.Option(help="violation (deducts) or commendation (adds).")],
    category: Annotated[str, typer.Option(help="Category, e.g. safety or environment.")],
    points: Annotated[float, typer.Option(help="Full points, before decay (0 < points <= 100).")],
    reason: Annotated[str, typer.Option(help="Why: what was found or commended.")],
    by: Annotated[str, typer.Option(help="Who records it (user name).")],
    uscc: UsccOpt = None,
    person: PersonOpt = None,
    severity: Annotated[str, typer.Option(help="Severity, e.g. warning or alarm.")] = "",
    source: Annotated[
        str | None,
        typer.Option(help="Where it comes from, e.g. inspection:2026-031 (recorded once)."),
    ] = None,
    occurred: Annotated[
        str | None, typer.Option(help="When it occurred, ISO date or date-time (default: now).")
    ] = None,
) -> None:
    """Add a credit record (violation or commendation) and recompute the subject's score."""
    from pydantic import ValidationError

    from alerts import credit

    settings = settings_or_exit()
    rec = or_exit(
        lambda: credit.RecordIn(
            uscc=uscc,
            person_id=person,
            kind=kind,  # type: ignore[arg-type]
            category=category,
            severity=severity,
            points=points,
            reason=reason,
            source=source,
            occurred_at=_when(occurred, "--occurred") or datetime.now(UTC),
            recorded_by=by,
        ),
        ValidationError,
        code=2,
    )
    with database(settings) as conn, conn.transaction():
        rid = or_exit(lambda: credit.add_record(conn, rec), credit.CreditError)
        s = credit.recompute(
            conn,
            uscc=rec.uscc,
            person_id=rec.person_id,
            policy=credit.Policy.from_settings(settings),
        )[0]
    said = f"record {rid}" if rid is not None else "already recorded from that source: nothing"
    console.print(f"{said} added; {s.subject} {s.id}: score {s.score:.1f}, grade {s.grade}")


@app.command("blacklist")
def blacklist(
    reason: Annotated[str, typer.Option(help="Why the subject is blacklisted.")],
    by: Annotated[str, typer.Option(help="Who records it (user name).")],
    uscc: UsccOpt = None,
    person: PersonOpt = None,
    start: Annotated[
        str | None, typer.Option(help="Start, ISO date or date-time (default: now).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="End, ISO date or date-time (default: until lifted).")
    ] = None,
) -> None:
    """Add a blacklist entry and recompute the subject's score."""
    from pydantic import ValidationError

    from alerts import credit

    settings = settings_or_exit()
    entry = or_exit(
        lambda: credit.BlacklistIn(
            uscc=uscc,
            person_id=person,
            starts_at=_when(start, "--start") or datetime.now(UTC),
            ends_at=_when(end, "--end"),
            reason=reason,
            recorded_by=by,
        ),
        ValidationError,
        code=2,
    )
    with database(settings) as conn, conn.transaction():
        bid = or_exit(lambda: credit.add_blacklist(conn, entry), credit.CreditError)
        s = credit.recompute(
            conn,
            uscc=entry.uscc,
            person_id=entry.person_id,
            policy=credit.Policy.from_settings(settings),
        )[0]
    black = "blacklisted" if s.blacklisted else "not blacklisted now"
    console.print(f"blacklist entry {bid} added; {s.subject} {s.id}: {black}, grade {s.grade}")
