-- Plain PostgreSQL (>= 15): plain tables, indexes for the dashboard queries, and rollup
-- views with date_bin that expose the same columns as the TimescaleDB continuous aggregates.
-- The origin is UTC midnight, as time_bucket's: a bare '2000-01-01' would be read in the
-- migrating session's TimeZone and shift the hourly buckets under a half-hour offset.

CREATE INDEX telemetry_device_metric_time ON telemetry (device_id, metric, time DESC);
CREATE INDEX telemetry_time_brin ON telemetry USING brin (time);
CREATE INDEX events_device_time ON events (device_id, time DESC);
CREATE INDEX events_event_id ON events (event_id);
CREATE INDEX attendance_project_time ON attendance (project_id, time DESC);
CREATE INDEX device_status_device_time ON device_status (device_id, time DESC);

CREATE VIEW telemetry_1m AS
SELECT date_bin(INTERVAL '1 minute', time, TIMESTAMPTZ '2000-01-01 00:00+00') AS bucket,
       project_id, device_id, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max,
       sum(value) AS sum, count(*) AS n
FROM telemetry
GROUP BY 1, project_id, device_id, metric;

CREATE VIEW telemetry_1h AS
SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00+00') AS bucket,
       project_id, device_id, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max,
       sum(value) AS sum, count(*) AS n
FROM telemetry
GROUP BY 1, project_id, device_id, metric;
