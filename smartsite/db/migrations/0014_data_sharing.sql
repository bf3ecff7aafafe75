-- Data sharing (数据共享交换): every request made with an API key is audited, not only
-- personal-data reads: which key, the query, the fields it saw, the status, and whether
-- resident ID numbers left masked or clear (server.sharing.audit). Key grants gain
-- resources, per-resource field allow-lists and personal_data (server.principal.KeyGrant,
-- in api_keys.grant_spec: no schema change).
ALTER TABLE access_audit
    ADD COLUMN key_id text,                  -- api_keys.id; NULL: a user, or a key that failed
    ADD COLUMN query text NOT NULL DEFAULT '',
    ADD COLUMN fields text[],                -- NULL: the route's whole response
    ADD COLUMN status integer,               -- HTTP status; NULL: rows from before 0014
    ADD COLUMN personal_data text CHECK (personal_data IN ('masked', 'clear'));
CREATE INDEX access_audit_key ON access_audit (key_id, at DESC) WHERE key_id IS NOT NULL;
CREATE INDEX access_audit_at ON access_audit (at DESC);
