-- Random spot checks (双随机一公开, inspections/): the inspectors and their affiliations, the
-- draws (seed, parameters and the snapshot of every input, so a draw can be recomputed and
-- checked), the drawn projects and inspectors, publication, and the inspections with their
-- findings, photos and rectification orders. A confirmed finding goes into the credit
-- records (credit_records.source = 'inspection:<inspection id>:<finding id>').

-- 执法检查人员: the pool inspectors are drawn from. A user account is optional (an inspector
-- may record inspections through it); district: the office they belong to (NULL: the city).
CREATE TABLE inspectors (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name text NOT NULL CHECK (length(btrim(name)) > 0),
    badge_no text,                              -- 执法证号 (public; not a personal ID number)
    district_code text REFERENCES districts (code),
    user_id bigint UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Former and current employment or other ties to an enterprise (conflict of interest): an
-- inspector is never drawn for a project that enterprise works on while the tie is current
-- or ended within the draw's cooling-off period. ended_on NULL: current.
CREATE TABLE inspector_affiliations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspector_id text NOT NULL REFERENCES inspectors (id) ON DELETE CASCADE,
    uscc char(18) NOT NULL
        CHECK (uscc ~ '^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$'),
    started_on date,
    ended_on date CHECK (ended_on IS NULL OR started_on IS NULL OR ended_on >= started_on),
    note text NOT NULL DEFAULT '',
    UNIQUE (inspector_id, uscc, started_on)
);
CREATE INDEX inspector_affiliations_uscc ON inspector_affiliations (uscc);

-- One draw: the snapshot holds every input (candidate projects with their risk factors and
-- weights, the inspectors, every exclusion with its reason, the parameters and the seed);
-- snapshot_sha256 is the SHA-256 of its canonical JSON at draw time, so an edit shows.
CREATE TABLE spot_check_draws (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title text NOT NULL CHECK (length(btrim(title)) > 0),
    district_code text REFERENCES districts (code),     -- NULL: the whole city
    algorithm text NOT NULL,
    seed bigint NOT NULL CHECK (seed >= 0),
    params jsonb NOT NULL,
    snapshot jsonb NOT NULL,
    snapshot_sha256 text NOT NULL CHECK (snapshot_sha256 ~ '^[0-9a-f]{64}$'),
    drawn_by text NOT NULL,
    drawn_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    published_by text,
    CHECK ((published_at IS NULL) = (published_by IS NULL))
);
CREATE INDEX spot_check_draws_district ON spot_check_draws (district_code, drawn_at DESC);

-- The drawn projects, in draw order, and the inspectors drawn for each.
CREATE TABLE spot_check_results (
    draw_id bigint NOT NULL REFERENCES spot_check_draws (id) ON DELETE CASCADE,
    rank integer NOT NULL CHECK (rank >= 1),
    project_id text NOT NULL REFERENCES projects (id),
    PRIMARY KEY (draw_id, project_id),
    UNIQUE (draw_id, rank)
);

CREATE TABLE spot_check_assignments (
    draw_id bigint NOT NULL,
    project_id text NOT NULL,
    rank integer NOT NULL CHECK (rank >= 1),
    inspector_id text NOT NULL REFERENCES inspectors (id),
    PRIMARY KEY (draw_id, project_id, inspector_id),
    UNIQUE (draw_id, project_id, rank),
    FOREIGN KEY (draw_id, project_id) REFERENCES spot_check_results (draw_id, project_id)
        ON DELETE CASCADE
);
CREATE INDEX spot_check_assignments_inspector ON spot_check_assignments (inspector_id, project_id);

-- An inspection of a drawn project (one per draw result).
CREATE TABLE inspections (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draw_id bigint NOT NULL,
    project_id text NOT NULL,
    inspected_on date NOT NULL,
    summary text NOT NULL DEFAULT '',
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (draw_id, project_id),
    FOREIGN KEY (draw_id, project_id) REFERENCES spot_check_results (draw_id, project_id)
);
CREATE INDEX inspections_project ON inspections (project_id, inspected_on DESC);

-- Who inspected (drawn inspectors; the recent-inspection exclusion reads this).
CREATE TABLE inspection_inspectors (
    inspection_id bigint NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    inspector_id text NOT NULL REFERENCES inspectors (id),
    PRIMARY KEY (inspection_id, inspector_id)
);
CREATE INDEX inspection_inspectors_inspector ON inspection_inspectors (inspector_id);

-- A finding: what was wrong, how bad, who answers for it. Confirmed (after the enterprise
-- could state its case) it becomes a credit record of the enterprise and of the person.
CREATE TABLE inspection_findings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspection_id bigint NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    category text NOT NULL CHECK (category ~ '^[a-z][a-z0-9_]{0,63}$'),
    severity text NOT NULL CHECK (severity IN ('minor', 'major', 'serious')),
    description text NOT NULL CHECK (length(btrim(description)) > 0),
    responsible_uscc char(18) REFERENCES enterprises (uscc),
    responsible_person_id text REFERENCES persons (id),
    points numeric(6, 2) NOT NULL CHECK (points > 0 AND points <= 100),
    status text NOT NULL DEFAULT 'recorded' CHECK (status IN ('recorded', 'confirmed')),
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    confirmed_by text,
    confirmed_at timestamptz,
    confirmation_note text NOT NULL DEFAULT '',
    CHECK ((status = 'confirmed') = (confirmed_at IS NOT NULL))
);
CREATE INDEX inspection_findings_inspection ON inspection_findings (inspection_id);

-- 整改通知: what must be put right, by when.
CREATE TABLE rectification_orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspection_id bigint NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    finding_id bigint REFERENCES inspection_findings (id) ON DELETE CASCADE,
    requirement text NOT NULL CHECK (length(btrim(requirement)) > 0),
    deadline timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    issued_by text NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rectification_orders_inspection ON rectification_orders (inspection_id);

-- Photos taken during the inspection (content-sniffed JPEG / PNG / WebP), optionally of one
-- finding.
CREATE TABLE inspection_photos (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspection_id bigint NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    finding_id bigint REFERENCES inspection_findings (id) ON DELETE CASCADE,
    content_type text NOT NULL,
    sha256 bytea NOT NULL,
    data bytea NOT NULL,
    caption text NOT NULL DEFAULT '',
    uploaded_by text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inspection_photos_inspection ON inspection_photos (inspection_id);
