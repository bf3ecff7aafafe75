-- Dashboard charts on TimescaleDB read the continuous aggregates telemetry_1m / telemetry_1h,
-- whose bucket column is indexed, so nothing is needed here; the plain path's counterpart
-- adds the covering index its raw-row charts use. A statement, so the file is not empty.
SELECT 1;
