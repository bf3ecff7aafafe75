-- Credit of enterprises and persons (alerts.credit): the records that make a score, the
-- blacklist, and the computed result on the registry rows (which correlation reads).
-- The records are the truth; enterprises.credit_* and persons.credit_* are a cache that
-- `smartsite credit recompute` rebuilds from them at any time.

-- One record is a violation (deducts) or a commendation (adds), of one enterprise (by USCC)
-- or one person, never both. points are the full weight at occurred_at; the decay with age
-- is applied when the score is computed, so the stored record never changes.
CREATE TABLE credit_records (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uscc char(18) REFERENCES enterprises (uscc) ON DELETE CASCADE,
    person_id text REFERENCES persons (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('violation', 'commendation')),
    category text NOT NULL CHECK (category ~ '^[a-z][a-z0-9_]{0,63}$'),
    severity text NOT NULL DEFAULT '',      -- e.g. the alert's warning / alarm
    points numeric(6, 2) NOT NULL CHECK (points > 0 AND points <= 100),
    reason text NOT NULL CHECK (length(btrim(reason)) > 0),
    source text,                            -- e.g. alert:<uuid>, inspection:<ref>; NULL: none
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by text NOT NULL,
    CHECK ((uscc IS NULL) <> (person_id IS NULL))
);
CREATE INDEX credit_records_uscc ON credit_records (uscc) WHERE uscc IS NOT NULL;
CREATE INDEX credit_records_person ON credit_records (person_id) WHERE person_id IS NOT NULL;
-- One record per source and subject: closing the same alert again (after a reopen) or a
-- replayed import cannot count the same violation twice.
CREATE UNIQUE INDEX credit_records_once ON credit_records (source, uscc) WHERE source IS NOT NULL
    AND uscc IS NOT NULL;
CREATE UNIQUE INDEX credit_records_once_person ON credit_records (source, person_id)
    WHERE source IS NOT NULL AND person_id IS NOT NULL;

-- 黑名单: active from starts_at until ends_at (NULL: until lifted by a new end date).
CREATE TABLE credit_blacklist (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uscc char(18) REFERENCES enterprises (uscc) ON DELETE CASCADE,
    person_id text REFERENCES persons (id) ON DELETE CASCADE,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz CHECK (ends_at IS NULL OR ends_at > starts_at),
    reason text NOT NULL CHECK (length(btrim(reason)) > 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by text NOT NULL,
    CHECK ((uscc IS NULL) <> (person_id IS NULL))
);
CREATE INDEX credit_blacklist_uscc ON credit_blacklist (uscc) WHERE uscc IS NOT NULL;
CREATE INDEX credit_blacklist_person ON credit_blacklist (person_id) WHERE person_id IS NOT NULL;

ALTER TABLE enterprises ADD COLUMN credit_computed_at timestamptz;   -- NULL: never computed
ALTER TABLE persons
    ADD COLUMN credit_score numeric(5, 1) NOT NULL DEFAULT 100
        CHECK (credit_score BETWEEN 0 AND 100),
    ADD COLUMN credit_grade text NOT NULL DEFAULT 'A',
    ADD COLUMN blacklisted boolean NOT NULL DEFAULT false,
    ADD COLUMN credit_computed_at timestamptz;
