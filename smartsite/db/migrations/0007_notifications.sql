-- Notification channels and per-channel deliveries of the alert outbox (0005). Each delivery
-- retries on its own schedule, so a failing channel never holds up the others.

CREATE TABLE notification_channels (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('webhook', 'email')),
    target text NOT NULL,                  -- URL, or e-mail address
    secret text,                           -- webhook HMAC key, shared with the receiver
    audience text NOT NULL CHECK (audience IN ('officer', 'regulator')),
    project_id text REFERENCES projects (id) ON DELETE CASCADE,   -- NULL: every project
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'webhook' OR (secret IS NOT NULL AND length(secret) >= 16)),
    CHECK (kind <> 'webhook' OR target ~ '^https?://'),
    CHECK (kind <> 'email' OR target ~ '^[^@[:space:]]+@[^@[:space:]]+$')
);

CREATE TABLE notification_deliveries (
    outbox_id bigint NOT NULL REFERENCES alert_outbox (id) ON DELETE CASCADE,
    channel_id bigint NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    delivered_at timestamptz,
    PRIMARY KEY (outbox_id, channel_id)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (channel_id, next_attempt_at)
    WHERE status = 'pending';

-- How far the notifier has fanned the outbox out into deliveries.
CREATE TABLE notifier_cursor (
    id integer PRIMARY KEY CHECK (id = 1),
    last_outbox_id bigint NOT NULL
);
-- Start at what is there: a first notifier does not replay the history to every channel.
INSERT INTO notifier_cursor SELECT 1, coalesce(max(id), 0) FROM alert_outbox;
