"""``smartsite edge check CONFIG``, ``smartsite edge run CONFIG`` (on the gateway) and
``smartsite edge push-config --project P`` (on the hub: zones, thresholds and the enrolled-face
gallery to the project's gateways)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from smartsite.cli_support import console, stop_on_signals

app = typer.Typer(help="The edge agent of a site gateway.", no_args_is_help=True)

ConfigArg = Annotated[Path, typer.Argument(help="The gateway's YAML config.")]


def _load(path: Path):  # type: ignore[no-untyped-def]
    from edge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        console.print(f"[red]bad config:[/red] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from None


def _model_line(what: str, name: str, models_dir: Path | None) -> tuple[bool, str]:
    """(ok, description) for one model: a registry name (sha256 against the manifest) or a
    file path (its sha256, and the class names its ONNX metadata declares)."""
    from models.registry import ModelError, sha256_file, status
    from smartsite.settings import Settings

    if name.endswith(".onnx"):
        p = Path(name)
        if not p.is_file():
            return False, f"{what}: {p} is missing"
        return True, f"{what}: {p} (sha256 {sha256_file(p)[:16]}…, a file: not pinned)"
    directory = models_dir or Settings().models_path
    try:
        st = status(name, directory)
    except ModelError as e:
        return False, f"{what}: {e}"
    if st.verified:
        return True, f"{what}: {name} → {st.path} (sha256 ok)"
    return False, f"{what}: {name} → {st.path}: {st.detail} (run `smartsite models fetch`)"


@app.command("check")
def check(
    config: ConfigArg,
    env: Annotated[
        bool, typer.Option(help="Also check the environment variables (broker URL, secrets).")
    ] = True,
) -> None:
    """Validate a gateway config and print what would run."""
    from edge.config import ConfigError

    cfg = _load(config)
    gw = cfg.gateway
    problems: list[str] = []
    console.print(f"[bold]gateway[/bold] {gw.device} of project {gw.project} ({config})")
    if env:
        try:
            ep = gw.mqtt.endpoint(gw.device)
            login = f"as {ep.username}" if ep.username else "anonymous"
            secret = ", password from the environment" if ep.password else ""
            tls = " TLS" if ep.tls else ""
            console.print(f"  broker {ep.host}:{ep.port}{tls} MQTT v{ep.protocol}, {login}{secret}")
        except ConfigError as e:
            problems.append(str(e))
            console.print(f"  [red]broker: {escape(str(e))}[/red]")
    ob = gw.outbox
    console.print(
        f"  outbox {ob.path} (≤ {ob.max_bytes / 2**20:.0f} MiB, synchronous={ob.synchronous}); "
        f"threads OpenCV {gw.threads.opencv}, onnxruntime {gw.threads.onnx_intra_op}"
    )
    console.print("[bold]models[/bold]")
    wanted = [("detector", cfg.models.detector)] if cfg.cameras else []
    if cfg.models.faces:
        wanted += [
            ("face detector", cfg.models.face_detector),
            ("face recogniser", cfg.models.face_recognizer),
        ]
    if not wanted:
        console.print("  none (no cameras)")
    for what, name in wanted:
        ok, line = _model_line(what, name, cfg.models.models_dir)
        console.print(f"  {'[green]ok[/green]' if ok else '[red]missing[/red]'} {escape(line)}")
        if not ok:
            problems.append(line)
    console.print(f"[bold]cameras[/bold] ({len(cfg.cameras)})")
    for cam in cfg.cameras:
        kind = cam.source_kind.value
        note = ""
        if kind in ("file", "folder") and not Path(str(cam.source)).exists():
            note = " [red](missing)[/red]"
            problems.append(f"camera {cam.id}: {cam.source} does not exist")
        state = "" if cam.enabled else " [dim](disabled)[/dim]"
        console.print(
            f"  {cam.id}: {kind} {escape(str(cam.source))}{note} at {cam.fps:g} fps, rules "
            f"{','.join(cam.rules.enabled)} ({cam.rules.k} of {cam.rules.n} frames, cooldown "
            f"{cam.rules.cooldown_s:g}s){state}"
        )
        for z in cam.zones:
            extra = []
            if z.required_ppe:
                extra.append("requires " + "+".join(z.required_ppe))
            if z.allowed_roles:
                extra.append("allowed " + ",".join(z.allowed_roles))
            if z.crowd_limit:
                extra.append(f"crowd ≤ {z.crowd_limit}")
            if z.loiter_s:
                extra.append(f"loiter ≤ {z.loiter_s:g}s")
            console.print(
                f"    zone {z.id} ({z.type.value}, {len(z.polygon)} points)"
                + (f": {'; '.join(extra)}" if extra else "")
            )
    console.print(f"[bold]sensors[/bold] ({len(cfg.sensors)})")
    for s in cfg.sensors:
        where = {
            "modbus_tcp": lambda s: (
                f"{s.host}:{s.port} unit {s.unit_id}, {len(s.registers)} registers"
            ),
            "http_json": lambda s: f"{s.url}, {len(s.fields)} fields",
            "serial_json": lambda s: f"{s.path} at {s.baudrate} baud, {len(s.fields)} fields",
            "simulator": lambda s: f"{s.devices} simulated devices",
        }[s.type](s)
        console.print(f"  {s.id}: {s.type} {escape(where)} every {s.interval_s:g}s")
    if problems:
        console.print(f"[red]{len(problems)} problem(s): the agent would not run as configured")
        raise typer.Exit(1)
    console.print("[green]config ok[/green]")


@app.command("run")
def run(
    config: ConfigArg,
    detect: Annotated[
        bool,
        typer.Option(
            help="Run detection on the cameras; --no-detect only reads and counts frames."
        ),
    ] = True,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the agent: cameras, sensors, outbox and MQTT, until Ctrl-C / SIGTERM."""
    from edge.agent import Agent, detection_pipelines
    from edge.config import ConfigError

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = _load(config)
    try:
        pipelines = detection_pipelines(cfg) if detect and cfg.cameras else None
        agent = Agent(cfg, pipelines=pipelines)
    except (ConfigError, Exception) as e:
        from models.registry import ModelError

        if not isinstance(e, ConfigError | ModelError):
            raise
        console.print(f"[red]cannot start:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    stop = stop_on_signals()
    agent.start()
    console.print(
        f"edge agent {cfg.gateway.device}: {len(agent.cameras.cameras)} cameras, "
        f"{len(agent.sensors)} sensors, outbox {cfg.gateway.outbox.path}"
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        agent.stop()


@app.command("push-config")
def push_config(
    project: Annotated[str, typer.Option(help="Project whose gateways get the push.")],
    device: Annotated[
        str | None, typer.Option(help="Only this gateway (an active gateway of the project).")
    ] = None,
    settings_file: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            help="YAML/JSON: thresholds for every gateway, zones per gateway id "
            "(see server/edge_config.py).",
        ),
    ] = None,
) -> None:
    """Hub side: retain the config (zones, thresholds, gallery version) and the enrolled-face
    gallery of the project's workers on each gateway's topics; agents apply them live."""
    from models.registry import ModelError
    from server.edge_config import EdgeConfigError, load_settings, publish, pushes
    from smartsite.cli_support import settings_or_exit
    from smartsite.db import connect
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services
    from smartsite.secrets import secret_key

    settings = settings_or_exit()
    try:
        doc = load_settings(settings_file) if settings_file else None
        with services(settings) as svc:
            upgrade(svc.database_url, settings)
            with connect(svc.database_url, autocommit=True) as conn:
                items = pushes(conn, secret_key(settings), project, device=device, settings=doc)
            publish(svc.mqtt, settings.topic_prefix, items)
    except (EdgeConfigError, ModelError) as e:
        console.print(f"[red]not pushed:[/red] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(1) from None
    for p in items:
        c = p.config
        console.print(
            f"{p.device}: config {c.id} ({len(c.zones)} zones, {len(c.thresholds)} thresholds), "
            f"gallery {p.gallery.version[:12]} ({len(p.gallery.workers)} workers)"
        )
