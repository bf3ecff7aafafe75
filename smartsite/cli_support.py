"""What every ``smartsite`` sub-command shares: the console and settings that fail clearly."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import typer
from pydantic import AliasChoices, ValidationError
from rich.console import Console
from rich.markup import escape

from smartsite.settings import Settings, get_settings

if TYPE_CHECKING:  # the CLI must start on an edge install, which has no psycopg
    import psycopg

console = Console()
T = TypeVar("T")


def _env_var(loc: tuple[int | str, ...]) -> str:
    """The environment variable a settings error is about (pydantic names the field)."""
    name = str(loc[0]) if loc else ""
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return name if name.isupper() else f"SMARTSITE_{name.upper()}"


def stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM (docker stop), for services to wind down on."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wide(out: Console, width: int = 110) -> Console:
    """A console on the same output at least ``width`` wide: tables stay readable in logs
    and 80-column terminals (rich otherwise squeezes and wraps every column)."""
    return Console(file=out.file, width=max(out.width, width))


def settings_or_exit() -> Settings:
    """The settings, or exit 2 naming each bad variable (never echoing its value)."""
    try:
        return get_settings()
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            console.print(
                f"[red]bad settings in the environment:[/red] "
                f"{_env_var(err['loc'])}: {escape(err['msg'])}"
            )
        raise typer.Exit(2) from None
    except Exception as exc:
        console.print(f"[red]bad settings in the environment:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@contextmanager
def database(settings: Settings, *, migrate: bool = True) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the configured (or embedded) database, migrated first."""
    from smartsite.db import connect
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    with services(settings, need_mqtt=False) as svc:
        if migrate:
            upgrade(svc.database_url, settings)
        with connect(svc.database_url, autocommit=True) as conn:
            yield conn


def or_exit(call: Callable[[], T], *errors: type[Exception], code: int = 1) -> T:
    """Run ``call``; a user error (one of ``errors``) is printed in red and exits ``code``."""
    try:
        return call()
    except errors as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(code) from None
