"""The hub's database: connections, migrations, registries."""

from __future__ import annotations

import psycopg

CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
"""The database is away (or the connection broke): retry, unlike errors about the data."""


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A psycopg connection that names the application in pg_stat_activity."""
    return psycopg.connect(url, autocommit=autocommit, application_name="smartsite")
