"""``smartsite demo``: the whole spine on the embedded default, then what arrived."""

from __future__ import annotations

import time
import uuid

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from alerts.engine import AlertEngine
from edge.simulator import gateway_id, register_site, run
from ingest.worker import IngestWorker
from smartsite.cli_support import wide
from smartsite.db import connect
from smartsite.db.migrate import upgrade
from smartsite.embedded import provision_device, services
from smartsite.settings import Settings


def run_demo(
    settings: Settings, console: Console, *, seconds: float, devices: int, rate: float, project: str
) -> None:
    with services(settings) as svc:
        for line in svc.embedded:
            console.print(f"started {line}")
        report = upgrade(svc.database_url, settings)
        console.print(
            f"schema: {report.path} path ({report.reason}); "
            f"{len(report.applied)} migrations applied now"
        )
        register_site(svc.database_url, project, devices)
        gateway = provision_device(settings, svc, gateway_id(project))
        worker = IngestWorker(svc.database_url, svc.mqtt, settings, name="demo-ingest").start()
        engine = AlertEngine(svc.database_url, svc.mqtt, settings).start()
        worker.wait_connected()
        engine.wait_connected()
        with Progress(console=console) as progress:
            task = progress.add_task(
                f"site {project}: {devices} sensors", total=int(seconds * rate * devices)
            )
            res = run(
                gateway,
                settings.topic_prefix,
                project,
                devices,
                rate,
                seconds,
                on_progress=lambda n: progress.update(task, completed=n),
            )
            # silent devices publish less than the estimate: end the bar at what was sent
            progress.update(task, total=res.messages, completed=res.messages)
        _wait_written(worker, res.readings, timeout=30)
        worker.stop()
        engine.stop()
        complete = _report(console, svc.database_url, project, res.ids, res.readings, worker)
        _report_alerts(console, svc.database_url, project)
        console.print(
            "\n[bold]Where to look[/bold]\n"
            f"  database: {svc.database_url}\n"
            f"  data directory (kept between runs): {settings.home}\n"
            "  tables: telemetry, telemetry_1m, telemetry_1h, alerts, alert_rules,\n"
            "          device_status, dead_letters, devices, projects\n"
            "[bold]Next[/bold]\n"
            "  smartsite user add admin --role admin   # an account for the web UI\n"
            "  smartsite server              # API and web UI on http://127.0.0.1:8000/\n"
            "  smartsite hub                 # keep the hub running (Ctrl-C stops)\n"
            "  smartsite simulate --help     # publish more sites into it\n"
            "  smartsite protocol schema     # JSON Schemas for integrators\n"
            "  smartsite bench ingest        # measure ingest throughput"
        )
    if not complete:
        raise typer.Exit(1)


def _wait_written(worker: IngestWorker, readings: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while worker.stats.written["telemetry"] < readings and time.monotonic() < deadline:
        time.sleep(0.1)


def _report(
    console: Console,
    url: str,
    project: str,
    ids: list[uuid.UUID],
    readings: int,
    worker: IngestWorker,
) -> bool:
    """Print what arrived; True when every message of this run was stored exactly once."""
    with connect(url) as conn:
        this_run = conn.execute(
            "SELECT count(DISTINCT message_id), count(*) FROM telemetry WHERE message_id = ANY(%s)",
            (ids,),
        ).fetchone()
        stored = conn.execute(
            "SELECT count(DISTINCT message_id), count(*) FROM telemetry WHERE project_id = %s",
            (project,),
        ).fetchone()
        per_metric = conn.execute(
            "SELECT d.kind, t.metric, count(*), round(min(t.value)::numeric, 1), "
            "round(max(t.value)::numeric, 1) FROM telemetry t JOIN devices d ON d.id = t.device_id "
            "WHERE t.project_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
            (project,),
        ).fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert this_run is not None and stored is not None and dead is not None
    table = Table(title=f"What arrived for {project}")
    for col in ("device kind", "metric", "readings", "min", "max"):
        table.add_column(col)
    for row in per_metric:
        table.add_row(*(str(x) for x in row))
    wide(console).print(table)
    console.print(
        f"this run: published {len(ids)} messages / {readings} readings; "
        f"stored {this_run[0]} messages / {this_run[1]} readings\n"
        f"in the database for {project} (this run and earlier ones): stored {stored[0]} "
        f"messages / {stored[1]} readings; duplicates absorbed {worker.stats.duplicates}; "
        f"dead letters in total {dead[0]}"
    )
    complete = this_run[0] == len(ids) and this_run[1] == readings
    if complete:
        console.print("[green]OK[/green]: every message of this run was stored exactly once")
    else:
        console.print(
            f"[red]INCOMPLETE[/red]: this run stored {this_run[0]} of {len(ids)} messages, "
            f"{this_run[1]} of {readings} readings"
        )
    return complete


def _report_alerts(console: Console, url: str, project: str) -> None:
    """What the alert engine made of the site's excursions (rules: the alert_rules table)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT severity, title, device_id, round(worst_value::numeric, 1), unit, "
            "CASE WHEN cleared_at IS NULL THEN 'active' ELSE 'cleared' END, status "
            "FROM alerts WHERE project_id = %s ORDER BY created_at DESC LIMIT 15",
            (project,),
        ).fetchall()
    if not rows:
        console.print("alerts: none opened yet (excursions are rare; run longer to see some)")
        return
    table = Table(title=f"Latest alerts of {project}")
    for col in ("level", "alert", "device", "worst", "unit", "condition", "status"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(x) for x in row))
    wide(console).print(table)
