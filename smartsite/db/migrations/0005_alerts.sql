-- Alert engine: rules with history, hub alerts with their lifecycle, transitions, the
-- notification outbox, and the engine state that must survive a restart.
-- Regular tables on both storage paths (alerts are mutable and few; edge_alerts is small).

-- Rules ----------------------------------------------------------------------------------
-- One row per rule key and scope. Scope, least to most specific: every device of a kind
-- (project_id and device_id NULL), every device of that kind in a project (project_id), one
-- device (device_id). For a device the most specific row of each key wins, whole: an override
-- is a complete spec, so the rule in force is always one row (and one revision) to point at.
-- device_kind '*' matches every kind (edge-judged rules: any device may publish them).
CREATE TABLE alert_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    device_kind text NOT NULL CHECK (device_kind ~ '^([a-z_]{1,32}|\*)$'),
    project_id text REFERENCES projects (id) ON DELETE CASCADE,
    device_id text REFERENCES devices (id) ON DELETE CASCADE,
    scope text GENERATED ALWAYS AS (
        CASE WHEN device_id IS NOT NULL THEN 'device'
             WHEN project_id IS NOT NULL THEN 'project'
             ELSE 'kind' END) STORED,
    enabled boolean NOT NULL DEFAULT true,
    spec jsonb NOT NULL,                    -- alerts.rules.RuleSpec, validated by the hub
    revision integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL,
    note text NOT NULL DEFAULT '',
    CHECK (device_id IS NULL OR project_id IS NULL),   -- a device row names only the device
    UNIQUE NULLS NOT DISTINCT (key, device_kind, project_id, device_id)
);
CREATE INDEX alert_rules_project ON alert_rules (project_id) WHERE project_id IS NOT NULL;
CREATE INDEX alert_rules_device ON alert_rules (device_id) WHERE device_id IS NOT NULL;

-- Every change of a rule, written by trigger so that no path (API, SQL console) skips it.
-- No foreign key to alert_rules: the history outlives a deleted rule.
CREATE TABLE alert_rule_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id bigint NOT NULL,
    operation text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    key text NOT NULL,
    device_kind text NOT NULL,
    project_id text,
    device_id text,
    enabled boolean NOT NULL,
    spec jsonb NOT NULL,
    revision integer NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    note text NOT NULL DEFAULT ''
);
CREATE INDEX alert_rule_history_rule ON alert_rule_history (key, changed_at);

CREATE FUNCTION alert_rules_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER alert_rules_bump BEFORE UPDATE ON alert_rules
    FOR EACH ROW EXECUTE FUNCTION alert_rules_bump();

-- Who deleted a rule cannot be on the row; the hub sets smartsite.actor for the transaction.
CREATE FUNCTION alert_rules_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r alert_rules;
    who text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        who := coalesce(nullif(current_setting('smartsite.actor', true), ''), session_user);
    ELSE
        r := NEW;
        who := NEW.updated_by;
    END IF;
    INSERT INTO alert_rule_history (rule_id, operation, key, device_kind, project_id, device_id,
                                    enabled, spec, revision, changed_by, note)
    VALUES (r.id, lower(TG_OP), r.key, r.device_kind, r.project_id, r.device_id, r.enabled,
            r.spec, r.revision, who,
            CASE WHEN TG_OP = 'DELETE'
                 THEN coalesce(current_setting('smartsite.note', true), '') ELSE r.note END);
    RETURN NULL;
END $$;

CREATE TRIGGER alert_rules_record AFTER INSERT OR UPDATE OR DELETE ON alert_rules
    FOR EACH ROW EXECUTE FUNCTION alert_rules_record();

-- Raw edge-judged alerts ----------------------------------------------------------------
-- Ingest stores every edge alert message here (the record of each occurrence, with its
-- evidence); the engine turns them into deduplicated alerts below. Until 0005 ingest wrote
-- them into `alerts`, one row per message; those rows are copied here and marked cleared.
CREATE TABLE edge_alerts (
    time timestamptz NOT NULL,
    project_id text NOT NULL,
    device_id text NOT NULL,
    rule text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warning', 'alarm')),
    camera text,
    zone text,
    event_id uuid,
    evidence_id text,
    detail text NOT NULL DEFAULT '',
    message_id uuid NOT NULL
);
CREATE INDEX edge_alerts_device_time ON edge_alerts (device_id, time DESC);
CREATE INDEX edge_alerts_project_time ON edge_alerts (project_id, time DESC);

INSERT INTO edge_alerts (time, project_id, device_id, rule, severity, camera, zone, event_id,
                         evidence_id, detail, message_id)
SELECT created_at, project_id, device_id, rule, severity, camera, zone, event_id, evidence_id,
       detail, id
FROM alerts WHERE source = 'edge';

-- Alerts: hub alerts and their lifecycle --------------------------------------------------
-- created_at is when the alert opened (the time of the observation that opened it).
-- severity is the level: 预警 warning or 报警 alarm; it only ever rises while the alert is
-- active. cleared_at marks the condition over (back to normal, device heard again, rule
-- removed); the lifecycle status is the officers' and regulators' work on it, separately.
ALTER TABLE alerts
    ADD COLUMN target text NOT NULL DEFAULT '',          -- metric, or camera/zone, or ''
    ADD COLUMN rule_id bigint,                            -- alert_rules row in force (no FK:
    ADD COLUMN rule_revision integer,                     -- the history keeps every revision)
    ADD COLUMN title text NOT NULL DEFAULT '',
    ADD COLUMN last_seen_at timestamptz,
    ADD COLUMN cleared_at timestamptz,
    ADD COLUMN clear_reason text,
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN last_value double precision,
    ADD COLUMN worst_value double precision,
    ADD COLUMN threshold double precision,                -- the level the value crossed
    ADD COLUMN unit text NOT NULL DEFAULT '',
    ADD COLUMN occurrences integer NOT NULL DEFAULT 1,    -- observations folded into it
    ADD COLUMN priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 100),
    ADD COLUMN factors jsonb NOT NULL DEFAULT '[]',       -- what set severity and priority
    ADD COLUMN status_changed_at timestamptz,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN responsible text,
    ADD COLUMN deadline timestamptz,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolution_note text,
    ADD COLUMN resolution_evidence_id text,
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN last_notified_at timestamptz,
    ADD COLUMN notify_count integer NOT NULL DEFAULT 0,
    ADD COLUMN regulator_notified_at timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

UPDATE alerts SET cleared_at = created_at, last_seen_at = created_at,
                  clear_reason = 'raw edge alert stored before migration 0005',
                  target = concat_ws('/', camera, zone)
WHERE source = 'edge';

ALTER TABLE alerts ADD CONSTRAINT alerts_status_check
    CHECK (status IN ('open', 'acknowledged', 'rectifying', 'resolved', 'closed', 'reopened'));
ALTER TABLE alerts ADD CONSTRAINT alerts_rectifying_assigned
    CHECK (status <> 'rectifying' OR (responsible IS NOT NULL AND deadline IS NOT NULL));

-- Dedupe: at most one active alert per device, rule and target. The engine relies on it (a
-- second engine, or a replayed batch, fails the insert instead of opening a duplicate).
CREATE UNIQUE INDEX alerts_one_active ON alerts (device_id, rule, target) WHERE cleared_at IS NULL;
CREATE INDEX alerts_overdue ON alerts (deadline) WHERE status = 'rectifying';
CREATE INDEX alerts_status ON alerts (status, created_at DESC);

-- Lifecycle transitions: who moved the alert from which status to which, when and why.
CREATE TABLE alert_transitions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    actor_role text NOT NULL,
    from_status text,                       -- NULL: the alert was created
    to_status text NOT NULL,
    note text NOT NULL DEFAULT '',
    evidence_id text,                       -- photo evidence (the evidence table's id)
    responsible text,
    deadline timestamptz
);
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);

-- Transactional outbox: what the engine and the lifecycle decided to tell people, written in
-- the transaction that decided it. Notifiers (WebSocket, webhook, e-mail) read it from their
-- own cursor and record their deliveries; NOTIFY wakes them at commit.
CREATE TABLE alert_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL
        CHECK (action IN ('open', 'escalate', 'repeat', 'regulator', 'clear', 'transition')),
    audience text NOT NULL CHECK (audience IN ('officer', 'regulator')),
    project_id text NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX alert_outbox_alert ON alert_outbox (alert_id);

CREATE FUNCTION alert_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alert_outbox', NEW.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER alert_outbox_notify AFTER INSERT ON alert_outbox
    FOR EACH ROW EXECUTE FUNCTION alert_outbox_notify();

-- Engine state per device, rule and target: sustain and rate windows, pending and active
-- levels, back-to-normal time, last heard. Written in the same transaction as the alerts it
-- opens or clears, before the MQTT messages behind it are acknowledged.
CREATE TABLE alert_state (
    device_id text NOT NULL,
    rule text NOT NULL,
    target text NOT NULL DEFAULT '',
    alert_id uuid REFERENCES alerts (id) ON DELETE SET NULL,
    state jsonb NOT NULL,                   -- alerts.evaluate.TargetState
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, rule, target)
);
