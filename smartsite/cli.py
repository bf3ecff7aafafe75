"""The ``smartsite`` command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smartsite.settings import Settings, get_settings

app = typer.Typer(
    help="Smart construction-site supervision: hub, edge and tools.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
protocol_app = typer.Typer(help="The MQTT protocol contract.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print measured figures.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(protocol_app, name="protocol")
app.add_typer(bench_app, name="bench")
console = Console()


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic names the variable and what is wrong with it
        console.print(f"[red]bad settings in the environment:[/red] {exc}")
        raise typer.Exit(2) from None


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long the simulated site runs.")] = 20,
    devices: Annotated[int, typer.Option(help="Sensors on the simulated site.")] = 12,
    rate: Annotated[float, typer.Option(help="Messages per second per sensor.")] = 1.0,
    project: Annotated[str, typer.Option(help="Project code of the simulated site.")] = "DEMO-001",
) -> None:
    """Embedded PostgreSQL + embedded broker + hub + a simulated site; prints what arrived."""
    from smartsite.demo import run_demo

    run_demo(_settings(), console, seconds=seconds, devices=devices, rate=rate, project=project)


@app.command()
def hub(
    workers: Annotated[int, typer.Option(help="Ingest workers on the shared subscription.")] = 1,
) -> None:
    """Run the hub services (ingest) until Ctrl-C, on configured or embedded services."""
    from ingest.service import serve
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = _settings()
    with services(settings) as svc:
        for line in svc.embedded:
            console.print(f"started {line}")
        report = upgrade(svc.database_url, settings)
        console.print(
            f"schema up to date ({report.path} path); ingest on "
            f"{svc.mqtt.host}:{svc.mqtt.port}, {workers} worker(s). Ctrl-C stops."
        )
        if settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port)
        serve(svc.database_url, svc.mqtt, settings, workers=workers)


@db_app.command("upgrade")
def db_upgrade(
    storage: Annotated[
        str, typer.Option(help="auto, timescale or postgres (first upgrade only).")
    ] = "auto",
) -> None:
    """Apply the versioned migrations (idempotent) and the storage policies."""
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = _settings()
    with services(settings, need_mqtt=False) as svc:
        report = upgrade(svc.database_url, settings, storage=storage)
    console.print(f"storage path: [bold]{report.path}[/bold] ({report.reason})")
    for m in report.applied:
        console.print(f"  applied {m}")
    console.print(f"  {len(report.already)} already applied")
    for p in report.policies:
        console.print(f"  policy: {p}")


@app.command()
def simulate(
    project: Annotated[str, typer.Option(help="Project code.")] = "SIM-001",
    devices: Annotated[int, typer.Option(help="Number of sensors.")] = 12,
    rate: Annotated[float, typer.Option(help="Messages per second per sensor.")] = 1.0,
    seconds: Annotated[float, typer.Option(help="Simulated seconds to publish.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same values).")] = 0,
    register: Annotated[bool, typer.Option(help="Register project and devices first.")] = True,
    realtime: Annotated[
        bool, typer.Option(help="Pace to the wall clock; off: as fast as possible.")
    ] = True,
) -> None:
    """Publish realistic site telemetry through the real protocol."""
    from rich.progress import Progress

    from edge.simulator import register_site, run
    from smartsite.embedded import services

    settings = _settings()
    with services(settings, need_db=register) as svc:
        if register:
            from smartsite.db.migrate import upgrade

            upgrade(svc.database_url, settings)
            register_site(svc.database_url, project, devices)
        total = int(devices * rate * seconds)
        with Progress(console=console) as progress:
            task = progress.add_task("publishing", total=total)
            res = run(
                svc.mqtt,
                settings.topic_prefix,
                project,
                devices,
                rate,
                seconds,
                seed=seed,
                realtime=realtime,
                on_progress=lambda n: progress.update(task, completed=n),
            )
    console.print(
        f"published {res.messages} messages ({res.readings} readings) in "
        f"{res.seconds:.1f} s to {svc.mqtt.host}:{svc.mqtt.port}"
    )


@protocol_app.command("schema")
def protocol_schema(
    out: Annotated[Path, typer.Option(help="Directory to write the JSON Schema files to.")] = Path(
        "protocol-schema"
    ),
) -> None:
    """Write one JSON Schema file per message kind, plus the topic layout and limits."""
    from smartsite.protocol import limits
    from smartsite.protocol.messages import json_schemas

    out.mkdir(parents=True, exist_ok=True)
    for kind, schema in json_schemas().items():
        (out / f"{kind}.schema.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False))
    contract = {
        "topics": "{prefix}/{project}/{device}/{kind}, evidence: .../evidence/{evidence_id}",
        "prefix": get_settings().topic_prefix,
        "limits": {k: v for k, v in vars(limits).items() if k.isupper()},
    }
    (out / "contract.json").write_text(json.dumps(contract, indent=2))
    console.print(f"wrote {len(json_schemas()) + 1} files to {out}/")


@bench_app.command("ingest")
def bench_ingest(
    messages: Annotated[int, typer.Option(help="Messages per measured run.")] = 100_000,
    naive_messages: Annotated[int, typer.Option(help="Messages for the naive ingestor.")] = 10_000,
    devices: Annotated[int, typer.Option(help="Simulated sensors.")] = 60,
) -> None:
    """Ingest throughput vs a count-only subscriber and a naive INSERT-per-message ingestor."""
    from ingest.bench import run_bench

    result = run_bench(
        _settings(), console, messages=messages, naive_messages=naive_messages, devices=devices
    )
    print(json.dumps(result))


if __name__ == "__main__":
    app()
