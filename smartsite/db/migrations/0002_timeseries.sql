-- Time series written by ingest. No unique keys here: idempotency is the ingest ledger's job,
-- so these stay plain append-only tables (hypertables on TimescaleDB).

CREATE TABLE telemetry (
    time timestamptz NOT NULL,
    project_id text NOT NULL,
    device_id text NOT NULL,
    metric text NOT NULL,
    value double precision NOT NULL,
    unit text NOT NULL,
    message_id uuid NOT NULL
);

CREATE TABLE events (
    time timestamptz NOT NULL,
    project_id text NOT NULL,
    device_id text NOT NULL,
    camera text NOT NULL,
    event_id uuid NOT NULL,
    type text NOT NULL,
    track_id integer NOT NULL,
    label text NOT NULL,
    score real NOT NULL,
    box real[] NOT NULL,
    zones text[] NOT NULL,
    attributes jsonb NOT NULL,
    evidence_id text,
    message_id uuid NOT NULL
);

CREATE TABLE attendance (
    time timestamptz NOT NULL,
    project_id text NOT NULL,
    device_id text NOT NULL,
    worker_id text NOT NULL,
    similarity real NOT NULL,
    direction text NOT NULL,
    camera text,
    evidence_id text,
    message_id uuid NOT NULL
);

CREATE TABLE device_status (
    time timestamptz NOT NULL,
    project_id text NOT NULL,
    device_id text NOT NULL,
    state text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    message_id uuid NOT NULL
);

-- Alerts are mutable (lifecycle), so a regular table keyed by id.
CREATE TABLE alerts (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    project_id text NOT NULL,
    device_id text NOT NULL,
    source text NOT NULL CHECK (source IN ('edge', 'hub')),
    rule text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warning', 'alarm')),
    status text NOT NULL DEFAULT 'open',
    camera text,
    zone text,
    event_id uuid,
    evidence_id text,
    detail text NOT NULL DEFAULT ''
);

CREATE TABLE evidence (
    id text NOT NULL,
    device_id text NOT NULL,
    project_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    content_type text NOT NULL,
    sha256 bytea NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (device_id, id)
);

CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic text NOT NULL,
    reason_code text NOT NULL,
    reason text NOT NULL,
    payload bytea NOT NULL,            -- truncated for oversize messages
    payload_size integer NOT NULL,
    project_id text,
    device_id text
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC);

-- Every message id ingested in the dedupe window: the idempotency key.
CREATE TABLE ingest_ledger (
    message_id uuid PRIMARY KEY,
    device_id text NOT NULL,
    seq bigint NOT NULL,               -- for gap detection per device
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_ledger_received ON ingest_ledger (received_at);

CREATE INDEX alerts_project_time ON alerts (project_id, created_at DESC);
CREATE INDEX alerts_open ON alerts (project_id) WHERE status <> 'closed';
