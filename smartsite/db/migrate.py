"""Versioned SQL migrations, applied idempotently; TimescaleDB path or plain PostgreSQL path.

Files in ``migrations/`` are ``NNNN_name.sql`` (both paths) or ``NNNN_name.timescale.sql`` /
``NNNN_name.postgres.sql`` (one per path). The path is chosen once, at the first upgrade,
and recorded; later upgrades follow it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import psycopg

from smartsite.db import connect
from smartsite.db.policies import apply_policies
from smartsite.settings import Settings

log = logging.getLogger(__name__)

StoragePath = Literal["timescale", "postgres"]
FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|postgres))?\.sql$")
LOCK_KEY = 0x5A17E  # advisory lock: concurrent upgrades (several hub replicas) take turns


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: dict[str | None, str]  # None: both paths; else per path

    def for_path(self, path: StoragePath) -> str:
        if None in self.sql:
            return self.sql[None]
        return self.sql[path]


@dataclass
class UpgradeReport:
    path: StoragePath
    reason: str
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)


def load_migrations() -> list[Migration]:
    found: dict[str, dict[str | None, str]] = {}
    names: dict[str, str] = {}
    for entry in resources.files("smartsite.db").joinpath("migrations").iterdir():
        m = FILE_RE.match(entry.name)
        if not m:
            continue
        version, name, path = m.groups()
        if names.setdefault(version, name) != name:
            raise RuntimeError(f"migration {version} has two names: {names[version]}, {name}")
        found.setdefault(version, {})[path] = entry.read_text(encoding="utf-8")
    migrations = []
    for version in sorted(found):
        sql = found[version]
        if None not in sql and set(sql) != {"timescale", "postgres"}:
            raise RuntimeError(f"migration {version} needs both .timescale.sql and .postgres.sql")
        migrations.append(Migration(version, names[version], sql))
    return migrations


def _choose_path(conn: psycopg.Connection, want: str) -> tuple[StoragePath, str]:
    row = conn.execute("SELECT value FROM schema_info WHERE key = 'storage_path'").fetchone()
    if row:
        return row[0], "recorded at the first upgrade"
    if want == "postgres":
        return "postgres", "plain PostgreSQL requested"
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if not available:
        if want == "timescale":
            raise RuntimeError("TimescaleDB requested but the extension is not installed")
        return "postgres", "timescaledb extension not available on this server"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        if want == "timescale":
            raise
        # Installed but not in shared_preload_libraries, or no privilege.
        return "postgres", f"timescaledb could not be created: {exc.diag.message_primary}"
    return "timescale", "timescaledb extension present"


def upgrade(url: str, settings: Settings, storage: str = "auto") -> UpgradeReport:
    """Apply every migration not yet applied, then the storage policies; idempotent."""
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_info (key text PRIMARY KEY, value text NOT NULL)"
            )
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version text PRIMARY KEY, name text NOT NULL, path text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            path, reason = _choose_path(conn, storage)
            conn.execute(
                "INSERT INTO schema_info VALUES ('storage_path', %s) ON CONFLICT DO NOTHING",
                (path,),
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            report = UpgradeReport(path=path, reason=reason)
            for mig in load_migrations():
                label = f"{mig.version}_{mig.name}"
                if mig.version in done:
                    report.already.append(label)
                    continue
                with conn.transaction():
                    conn.execute(mig.for_path(path))  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, path) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, path),
                    )
                report.applied.append(label)
                log.info("applied migration %s (%s path)", label, path)
            report.policies = apply_policies(conn, path, settings)
            return report
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def storage_path(conn: psycopg.Connection) -> StoragePath:
    row = conn.execute("SELECT value FROM schema_info WHERE key = 'storage_path'").fetchone()
    if not row:
        raise RuntimeError("database not migrated: run `smartsite db upgrade`")
    return row[0]
