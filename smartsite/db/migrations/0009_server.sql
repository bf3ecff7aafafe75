-- Server: API keys for integrations and other bureaus, the audit of personal-data reads,
-- and login attempts (rate limiting survives a restart and is shared by server processes).

-- A key is shown once as "sk_<id>_<secret>"; only a keyed hash of the secret is stored.
-- grant: server.principal.KeyGrant (projects / district it may read, fields it may see).
CREATE TABLE api_keys (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{8,32}$'),
    name text NOT NULL,
    secret_hash bytea NOT NULL,
    role text NOT NULL DEFAULT 'data_sharing' CHECK (role IN ('data_sharing', 'integration')),
    grant_spec jsonb NOT NULL DEFAULT '{}',
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);

-- Who read personal data (workers, attendance, face-identified events), what and how much.
CREATE TABLE access_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    principal text NOT NULL,               -- "user:<name>" or "key:<id>"
    role text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    resource text NOT NULL,
    records integer NOT NULL
);
CREATE INDEX access_audit_principal ON access_audit (principal, at DESC);

CREATE TABLE login_attempts (
    at timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    client text NOT NULL,
    ok boolean NOT NULL
);
CREATE INDEX login_attempts_username ON login_attempts (username, at DESC);
CREATE INDEX login_attempts_client ON login_attempts (client, at DESC);
