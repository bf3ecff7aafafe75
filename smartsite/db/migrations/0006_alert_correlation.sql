-- Alert correlation: what the hub knew about the project's permit, the place on the BIM model,
-- the enterprises and the worker when the alert opened (alerts.correlate.Correlation). It is a
-- snapshot on purpose: a permit renewed or a contractor delisted later must not rewrite why
-- an alert was raised then.
ALTER TABLE alerts
    ADD COLUMN correlation jsonb,                         -- NULL: opened before 0006
    -- Copied out of the snapshot so that regulators can list unpermitted work by index.
    ADD COLUMN unpermitted_work boolean NOT NULL DEFAULT false,
    ADD COLUMN worker_id text;                            -- face-identified worker, if any

CREATE INDEX alerts_unpermitted ON alerts (project_id, created_at DESC) WHERE unpermitted_work;
CREATE INDEX alerts_worker ON alerts (worker_id, created_at DESC) WHERE worker_id IS NOT NULL;

-- Certificates a zone requires of whoever works in it (e.g. special operations near the
-- crane). The zone is the name edge events report, or a named BIM zone.
CREATE TABLE zone_certificate_requirements (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    zone text NOT NULL,
    certificate_type text NOT NULL,          -- certificates.type, e.g. special_operations:...
    PRIMARY KEY (project_id, zone, certificate_type)
);
