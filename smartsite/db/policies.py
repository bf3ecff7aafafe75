"""Storage policies from settings: chunking, compression, retention, cagg refresh.

TimescaleDB runs them as background jobs; on plain PostgreSQL the hub's maintenance loop
(:func:`prune`) deletes what is past retention.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from smartsite.settings import Settings

RAW_TABLES = ("telemetry", "events", "attendance", "device_status")


def apply_policies(conn: psycopg.Connection, path: str, settings: Settings) -> list[str]:
    """(Re)apply the policies so a changed setting takes effect on the next upgrade."""
    if path != "timescale":
        return [f"retention {settings.retention_days} d by the hub's prune job (plain PostgreSQL)"]
    compress_after = timedelta(days=settings.compress_after_days)
    retain = timedelta(days=settings.retention_days)
    done = []
    with conn.transaction():
        conn.execute(
            "SELECT set_chunk_time_interval('telemetry', %s::interval)", (settings.chunk_interval,)
        )
        enabled = conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'telemetry'"
        ).fetchone()
        if not (enabled and enabled[0]):
            # segmentby device and metric: the dashboard reads one series at a time.
            conn.execute(
                "ALTER TABLE telemetry SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'device_id, metric', "
                "timescaledb.compress_orderby = 'time DESC')"
            )
        conn.execute("SELECT remove_compression_policy('telemetry', if_exists => true)")
        conn.execute(
            "SELECT add_compression_policy('telemetry', compress_after => %s)", (compress_after,)
        )
        done.append(f"compress telemetry after {settings.compress_after_days} d")
        for table in RAW_TABLES:
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            conn.execute("SELECT add_retention_policy(%s, drop_after => %s)", (table, retain))
        done.append(f"retention {settings.retention_days} d on {', '.join(RAW_TABLES)}")
        conn.execute(
            "SELECT add_continuous_aggregate_policy('telemetry_1m', "
            "start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute', "
            "schedule_interval => INTERVAL '1 minute', if_not_exists => true)"
        )
        conn.execute(
            "SELECT add_continuous_aggregate_policy('telemetry_1h', "
            "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', "
            "schedule_interval => INTERVAL '30 minutes', if_not_exists => true)"
        )
        done.append("refresh telemetry_1m every 1 min, telemetry_1h every 30 min")
    return done


def prune(conn: psycopg.Connection, path: str, settings: Settings) -> dict[str, int]:
    """Delete what is past retention (plain path) and message ids past the dedupe window."""
    deleted: dict[str, int] = {}
    with conn.transaction():
        if path != "timescale":
            for table in RAW_TABLES:
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE time < now() - make_interval(days => %s)",
                    (settings.retention_days,),
                )
                deleted[table] = cur.rowcount
        cur = conn.execute(
            "DELETE FROM ingest_ledger WHERE received_at < now() - make_interval(days => %s)",
            (settings.dedupe_window_days,),
        )
        deleted["ingest_ledger"] = cur.rowcount
    return deleted
