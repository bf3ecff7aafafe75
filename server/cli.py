"""``smartsite server`` (the API and web UI), ``smartsite user`` and ``smartsite apikey``."""

from __future__ import annotations

from typing import Annotated

import typer

from smartsite.cli_support import console, database, or_exit, settings_or_exit

user_app = typer.Typer(help="User accounts of the API and web UI.", no_args_is_help=True)
key_app = typer.Typer(help="API keys for integrations and other bureaus.", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address (SMARTSITE_SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SMARTSITE_SERVER_PORT).")] = None,
) -> None:
    """Run the API, the live alert stream and the web UI until Ctrl-C."""
    import uvicorn

    from server.app import create_app
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    settings = settings_or_exit()
    with services(settings, need_mqtt=False) as svc:
        upgrade(svc.database_url, settings)
        app = create_app(settings, svc.database_url)
        host, port = host or settings.server_host, port or settings.server_port
        console.print(f"API and web UI on http://{host}:{port}/ (OpenAPI at /docs)")
        uvicorn.run(app, host=host, port=port, log_level="info")


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin, regulator, officer, enterprise, data_sharing")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="SMARTSITE_NEW_USER_PASSWORD",
            help="At least 8 characters (asked for when not given).",
        ),
    ],
    project: Annotated[list[str] | None, typer.Option(help="An officer's project.")] = None,
    district: Annotated[str | None, typer.Option(help="A regulator's district.")] = None,
    enterprise: Annotated[str | None, typer.Option(help="An enterprise user's USCC.")] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create a user (the password is asked for, or read from SMARTSITE_NEW_USER_PASSWORD)."""
    from pydantic import ValidationError

    from server.users import UserError, UserIn, create_user

    def make() -> UserIn:
        return UserIn(
            username=username,
            password=password,
            display_name=name,
            role=role,  # type: ignore[arg-type]
            district_code=district,
            enterprise_uscc=enterprise,
            projects=project or [],
        )

    u = or_exit(make, ValidationError, code=2)
    with database(settings_or_exit()) as conn:
        user_id = or_exit(lambda: create_user(conn, u), UserError)
    console.print(f"user {username} ({role}) created, id {user_id}")


@key_app.command("add")
def key_add(
    name: Annotated[str, typer.Argument(help="Who the key is for (e.g. a bureau).")],
    project: Annotated[list[str] | None, typer.Option(help="Only this project (repeat).")] = None,
    district: Annotated[str | None, typer.Option(help="Only this district's projects.")] = None,
) -> None:
    """Create a read-only data-sharing key; it is printed once and never stored."""
    from server.principal import KeyGrant
    from server.users import create_api_key
    from smartsite.secrets import secret_key

    settings = settings_or_exit()
    with database(settings) as conn:
        full = create_api_key(
            conn,
            secret_key(settings),
            name,
            KeyGrant(projects=project or None, district=district),
            by="cli",
        )
    console.print(f"key for {name} (send as X-API-Key; shown once):")
    print(full)
