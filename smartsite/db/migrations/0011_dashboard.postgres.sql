-- Dashboard charts on plain PostgreSQL. The telemetry_1m / telemetry_1h views group the whole
-- table before a time range can apply (the range is on date_bin(time), which no index serves),
-- so a month's chart read 1.1-1.3 s through them on `smartsite bench dashboard`'s 13 M rows.
-- The charts aggregate the raw rows of one device and metric over the range instead
-- (server.telemetry), and this covering index lets that be an index-only scan: ~25 ms for
-- 30 days of one series read cold, against ~700 ms through the heap with the 0003 index,
-- which it replaces (same leading columns; a backward scan serves "latest reading" lookups).
-- Built in the migration's transaction: writes to telemetry wait while it is built.

CREATE INDEX telemetry_series ON telemetry (device_id, metric, time) INCLUDE (value);
DROP INDEX telemetry_device_metric_time;
