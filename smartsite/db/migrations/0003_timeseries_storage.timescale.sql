-- TimescaleDB: hypertables and continuous aggregates (1 min, and 1 h on top of it).
-- Chunk interval, compression and retention are set from settings by the policies step
-- (smartsite.db.policies), not here, so they can change without a migration.
-- Written against the TimescaleDB 2.13+ API (by_range, hierarchical caggs).

SELECT create_hypertable('telemetry', by_range('time', INTERVAL '1 day'));
SELECT create_hypertable('events', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('attendance', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('device_status', by_range('time', INTERVAL '7 days'));

CREATE INDEX telemetry_device_metric_time ON telemetry (device_id, metric, time DESC);
CREATE INDEX events_device_time ON events (device_id, time DESC);
CREATE INDEX events_event_id ON events (event_id, time DESC);
CREATE INDEX attendance_project_time ON attendance (project_id, time DESC);
CREATE INDEX device_status_device_time ON device_status (device_id, time DESC);

-- WITH NO DATA: a cagg created WITH DATA cannot run inside the migration's transaction.
-- materialized_only = false: real-time aggregation, so recent buckets match the plain path.
CREATE MATERIALIZED VIEW telemetry_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       project_id, device_id, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max,
       sum(value) AS sum, count(*) AS n
FROM telemetry
GROUP BY 1, project_id, device_id, metric
WITH NO DATA;

CREATE MATERIALIZED VIEW telemetry_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       project_id, device_id, metric,
       sum(sum) / sum(n) AS avg, min(min) AS min, max(max) AS max,
       sum(sum) AS sum, sum(n)::bigint AS n
FROM telemetry_1m
GROUP BY 1, project_id, device_id, metric
WITH NO DATA;
