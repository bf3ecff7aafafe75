-- Server registry and credit API: every change to a blacklist entry after it was recorded
-- (lifting it early, a corrected reason or end), with who made it, when and why. The entry
-- row holds the current state; this table is how it got there.

CREATE TABLE credit_blacklist_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id bigint NOT NULL REFERENCES credit_blacklist (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    action text NOT NULL CHECK (action IN ('lift', 'edit')),
    ends_at_before timestamptz,
    ends_at_after timestamptz,
    reason_before text NOT NULL,
    reason_after text NOT NULL,
    note text NOT NULL CHECK (length(btrim(note)) > 0)
);
CREATE INDEX credit_blacklist_changes_entry ON credit_blacklist_changes (entry_id, at);
