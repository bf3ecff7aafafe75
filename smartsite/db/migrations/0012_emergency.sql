-- Emergency (应急, issue 8): incident reports with every revision kept, early-warning
-- broadcasts with their targets and acknowledgements, duty rosters and contacts.

-- An incident (事故). The figures and grade are the latest revision's (kept in step by
-- emergency.incidents); emergency_incident_reports holds every revision. reported_at is the
-- first report's time (NULL: registered by a regulator, the project has not reported yet).
CREATE TABLE emergency_incidents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    occurred_at timestamptz NOT NULL,
    reported_at timestamptz,
    place text NOT NULL DEFAULT '',
    summary text NOT NULL DEFAULT '',
    deaths integer NOT NULL DEFAULT 0 CHECK (deaths >= 0),
    serious_injuries integer NOT NULL DEFAULT 0 CHECK (serious_injuries >= 0),
    direct_loss_yuan numeric(16, 2) NOT NULL DEFAULT 0 CHECK (direct_loss_yuan >= 0),
    measures text NOT NULL DEFAULT '',
    reporter text NOT NULL DEFAULT '',
    grade text NOT NULL CHECK (grade IN ('general', 'larger', 'major', 'especially_major')),
    grade_reason text NOT NULL,
    revision integer NOT NULL DEFAULT 1,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX emergency_incidents_project ON emergency_incidents (project_id, occurred_at DESC);

-- Every revision: the registration by a regulator (notice), the first report (initial) and
-- each follow-up report (核报 / 补报), with the figures and the grade they gave.
CREATE TABLE emergency_incident_reports (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES emergency_incidents (id) ON DELETE CASCADE,
    revision integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('notice', 'initial', 'follow_up')),
    at timestamptz NOT NULL DEFAULT now(),
    by_name text NOT NULL,
    by_role text NOT NULL,
    reporter text NOT NULL DEFAULT '',
    place text NOT NULL DEFAULT '',
    summary text NOT NULL DEFAULT '',
    deaths integer NOT NULL CHECK (deaths >= 0),
    serious_injuries integer NOT NULL CHECK (serious_injuries >= 0),
    direct_loss_yuan numeric(16, 2) NOT NULL CHECK (direct_loss_yuan >= 0),
    measures text NOT NULL DEFAULT '',
    note text NOT NULL DEFAULT '',
    grade text NOT NULL,
    grade_reason text NOT NULL,
    UNIQUE (incident_id, revision)
);

-- An early warning (预警发布). target: a district, a list of projects or all projects of the
-- issuer's scope, resolved into emergency_warning_targets when issued. overrides: threshold
-- overrides ([{rule, warning, alarm}]) the alert engine applies to the targeted projects
-- while the warning is in force (starts_at <= now < ends_at, not cancelled).
CREATE TABLE emergency_warnings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('strong_wind', 'heavy_rain', 'heat', 'other')),
    level text NOT NULL CHECK (level IN ('blue', 'yellow', 'orange', 'red')),
    title text NOT NULL,
    text text NOT NULL DEFAULT '',
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    target text NOT NULL CHECK (target IN ('district', 'projects', 'all')),
    district_code text REFERENCES districts (code),
    overrides jsonb NOT NULL DEFAULT '[]',
    issued_by text NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    cancelled_by text,
    cancel_reason text,
    CHECK (ends_at > starts_at),
    CHECK ((target = 'district') = (district_code IS NOT NULL))
);
CREATE INDEX emergency_warnings_in_force ON emergency_warnings (ends_at) WHERE cancelled_at IS NULL;

CREATE TABLE emergency_warning_targets (
    warning_id bigint NOT NULL REFERENCES emergency_warnings (id) ON DELETE CASCADE,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (warning_id, project_id)
);
CREATE INDEX emergency_warning_targets_project ON emergency_warning_targets (project_id);

CREATE TABLE emergency_warning_acks (
    warning_id bigint NOT NULL,
    project_id text NOT NULL,
    acknowledged_at timestamptz NOT NULL DEFAULT now(),
    acknowledged_by text NOT NULL,
    note text NOT NULL DEFAULT '',
    PRIMARY KEY (warning_id, project_id),
    FOREIGN KEY (warning_id, project_id)
        REFERENCES emergency_warning_targets (warning_id, project_id) ON DELETE CASCADE
);

-- Duty (值班): an office is a regulator's (district code, or the city when NULL) or a
-- project's; its contacts, and shifts in local time (settings.alerts_timezone) on a date or
-- on weekdays (1 = Monday ... 7 = Sunday); a shift whose end is not after its start runs
-- past midnight into the next day.
CREATE TABLE emergency_duty_offices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('regulator', 'project')),
    district_code text REFERENCES districts (code) ON DELETE CASCADE,
    project_id text REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    phone text NOT NULL DEFAULT '',
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'regulator' OR (project_id IS NOT NULL AND district_code IS NULL)),
    CHECK (kind = 'project' OR project_id IS NULL)
);
CREATE UNIQUE INDEX emergency_duty_offices_project ON emergency_duty_offices (project_id)
    WHERE kind = 'project';
CREATE UNIQUE INDEX emergency_duty_offices_district
    ON emergency_duty_offices (coalesce(district_code, '')) WHERE kind = 'regulator';

CREATE TABLE emergency_duty_contacts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    office_id bigint NOT NULL REFERENCES emergency_duty_offices (id) ON DELETE CASCADE,
    name text NOT NULL,
    title text NOT NULL DEFAULT '',
    phone text NOT NULL DEFAULT '',
    position integer NOT NULL,
    UNIQUE (office_id, name)
);

CREATE TABLE emergency_duty_shifts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    office_id bigint NOT NULL REFERENCES emergency_duty_offices (id) ON DELETE CASCADE,
    contact_id bigint NOT NULL REFERENCES emergency_duty_contacts (id) ON DELETE CASCADE,
    role text NOT NULL DEFAULT 'duty' CHECK (role IN ('leader', 'duty')),
    on_date date,
    weekdays smallint[],
    start_time time NOT NULL,
    end_time time NOT NULL,
    position integer NOT NULL,
    CHECK ((on_date IS NULL) <> (weekdays IS NULL))
);
