"""``smartsite alerts``: run the alert engine."""

from __future__ import annotations

from typing import Annotated

import typer

from smartsite.cli_support import console, settings_or_exit, stop_on_signals

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
    from alerts.engine import AlertEngine
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = settings_or_exit()
    stop = stop_on_signals()
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


@app.command(
    "notify",
    epilog="Sends what the engine and the lifecycle announce (alert_outbox) to the channels "
    "added with `smartsite alerts channel-add`: signed webhooks and e-mail "
    "(SMARTSITE_SMTP_URL). Each delivery retries on its own; `smartsite hub` runs this too.",
)
def notify() -> None:
    """Run the notifier until Ctrl-C."""
    from alerts.notify import Notifier
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = settings_or_exit()
    stop = stop_on_signals()
    with services(settings, need_mqtt=False) as svc:
        upgrade(svc.database_url, settings)
        notifier = Notifier(svc.database_url, settings).start()
        console.print("notifier running. Ctrl-C stops.")
        stop.wait()
        notifier.stop()


@app.command("channel-add")
def channel_add(
    kind: Annotated[str, typer.Option(help="webhook or email.")],
    target: Annotated[str, typer.Option(help="The webhook URL, or the e-mail address.")],
    audience: Annotated[str, typer.Option(help="officer or regulator announcements.")],
    project: Annotated[
        str | None, typer.Option(help="Only this project's alerts (default: every project).")
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option(
            metavar="VAR",
            help="Webhooks: the environment variable holding the HMAC secret shared with the "
            "receiver (secrets never go on the command line).",
        ),
    ] = None,
) -> None:
    """Add a notification channel: where announcements of alerts are sent."""
    import os

    import psycopg
    from pydantic import ValidationError

    from alerts.notify import ChannelIn, add_channel
    from smartsite.cli_support import database, or_exit

    secret = os.environ.get(secret_env) if secret_env else None
    if secret_env and not secret:
        console.print(f"[red]{secret_env} is not set or empty[/red]")
        raise typer.Exit(2)
    channel = or_exit(
        lambda: ChannelIn(
            kind=kind,
            target=target,
            secret=secret,
            audience=audience,  # type: ignore[arg-type]
            project_id=project,
        ),
        ValidationError,
        code=2,
    )
    with database(settings_or_exit()) as conn:
        cid = or_exit(lambda: add_channel(conn, channel), psycopg.errors.IntegrityError, code=2)
    console.print(f"channel {cid}: {kind} → {target} ({audience}, {project or 'every project'})")
