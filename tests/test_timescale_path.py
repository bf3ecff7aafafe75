"""The TimescaleDB path cannot run here (the extension is not installable), so check what can
be checked without it: its SQL parses with PostgreSQL's own parser, it makes every raw table a
hypertable, and its continuous aggregates expose exactly the columns the plain path's rollup
views do, so queries stay the same on both paths."""

from __future__ import annotations

from importlib import resources

import pglast
import pytest
from pglast import ast

from smartsite.db.policies import RAW_TABLES

MIGRATIONS = resources.files("smartsite.db").joinpath("migrations")


def statements(name: str) -> list[ast.RawStmt]:
    return list(pglast.parse_sql(MIGRATIONS.joinpath(name).read_text(encoding="utf-8")))


def rollups(name: str) -> dict[str, list[str]]:
    """Rollup relation → its output column names, from CREATE VIEW / MATERIALIZED VIEW."""
    out: dict[str, list[str]] = {}
    for raw in statements(name):
        stmt = raw.stmt
        if isinstance(stmt, ast.ViewStmt):
            rel, query = stmt.view.relname, stmt.query
        elif isinstance(stmt, ast.CreateTableAsStmt):
            rel, query = stmt.into.rel.relname, stmt.query
        else:
            continue
        out[rel] = [t.name or t.val.fields[-1].sval for t in query.targetList]
    return out


def test_every_migration_parses_with_the_postgres_parser() -> None:
    for entry in MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            assert pglast.parse_sql(entry.read_text(encoding="utf-8")), entry.name


def test_every_raw_table_becomes_a_hypertable() -> None:
    sql = MIGRATIONS.joinpath("0003_timeseries_storage.timescale.sql").read_text()
    for table in RAW_TABLES:
        assert f"create_hypertable('{table}', by_range('time'" in sql, table


@pytest.mark.parametrize("rollup", ["telemetry_1m", "telemetry_1h"])
def test_both_paths_expose_the_same_rollup_columns(rollup: str) -> None:
    timescale = rollups("0003_timeseries_storage.timescale.sql")
    plain = rollups("0003_timeseries_storage.postgres.sql")
    assert (
        timescale[rollup]
        == plain[rollup]
        == ["bucket", "project_id", "device_id", "metric", "avg", "min", "max", "sum", "n"]
    )


def test_the_aggregates_are_continuous_and_created_without_data() -> None:
    caggs = [
        raw.stmt
        for raw in statements("0003_timeseries_storage.timescale.sql")
        if isinstance(raw.stmt, ast.CreateTableAsStmt)
    ]
    assert [c.into.rel.relname for c in caggs] == ["telemetry_1m", "telemetry_1h"]
    for c in caggs:
        options = {(o.defnamespace, o.defname) for o in c.into.options}
        assert ("timescaledb", "continuous") in options
        assert c.into.skipData  # WITH NO DATA: WITH DATA cannot run in the migration's transaction
