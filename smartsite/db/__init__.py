"""The hub's database: connections, migrations, registries."""

from __future__ import annotations

import psycopg

CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
"""The database is away (or the connection broke): retry, unlike errors about the data."""


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A psycopg connection that names the application in pg_stat_activity."""
    return psycopg.connect(url, autocommit=autocommit, application_name="smartsite")


def ensure_database(url: str) -> None:
    """Create the database ``url`` names on its server when it does not exist yet (benches
    point at a throwaway database of their own)."""
    name = psycopg.conninfo.conninfo_to_dict(url).get("dbname")
    if not name:
        return
    try:
        psycopg.connect(url).close()
        return
    except psycopg.OperationalError:
        pass
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
