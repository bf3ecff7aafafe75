"""``smartsite alerts``: run the alert engine."""

from __future__ import annotations

import typer

from smartsite.cli_support import console, settings_or_exit

app = typer.Typer(help="Alert engine: rules, evaluation, lifecycle.", no_args_is_help=True)


@app.command(
    "run",
    epilog="Rules live in the database (alert_rules, with history); the defaults from practice "
    "are seeded on first start. The engine keeps its own persistent MQTT session "
    "(SMARTSITE_ALERTS_NAME names it) and acknowledges messages after they are judged and "
    "committed, so a restart neither loses nor duplicates alerts.",
)
def run() -> None:
    """Run the alert engine until Ctrl-C: telemetry and edge alerts in, alerts out."""
    import signal
    import threading

    from alerts.engine import AlertEngine
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = settings_or_exit()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with services(settings) as svc:
        for line in svc.embedded:
            console.print(f"started {line}")
        upgrade(svc.database_url, settings)
        console.print(
            f"alert engine on {svc.mqtt.host}:{svc.mqtt.port} (MQTT client "
            f"smartsite-{settings.alerts_name}, time zone {settings.alerts_timezone}). "
            "Ctrl-C stops."
        )
        AlertEngine(svc.database_url, svc.mqtt, settings).run_forever(stop)
