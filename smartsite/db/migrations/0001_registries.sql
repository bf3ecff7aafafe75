-- Registries: projects and permits, enterprises, persons and certificates, devices, users.

CREATE TABLE districts (
    code text PRIMARY KEY,                     -- administrative division code, e.g. 110105
    name text NOT NULL
);

CREATE TABLE projects (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),   -- the topic segment
    name text NOT NULL,
    address text NOT NULL DEFAULT '',
    district_code text REFERENCES districts (code),
    latitude double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude double precision CHECK (longitude BETWEEN -180 AND 180),
    status text NOT NULL DEFAULT 'under_construction'
        CHECK (status IN ('planned', 'under_construction', 'suspended', 'completed')),
    start_date date,
    planned_end_date date,
    completed_date date,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- 施工许可证: a project may have none yet (unpermitted work) or several over its life.
CREATE TABLE permits (
    number text PRIMARY KEY CHECK (length(number) BETWEEN 6 AND 40),
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    issued_on date NOT NULL,
    expires_on date,
    status text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'suspended', 'revoked', 'expired')),
    issuer text NOT NULL DEFAULT ''
);
CREATE INDEX permits_project ON permits (project_id);

-- 统一社会信用代码: format checked here, check character checked by the registry code.
CREATE TABLE enterprises (
    uscc char(18) PRIMARY KEY CHECK (uscc ~ '^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$'),
    name text NOT NULL,
    kind text NOT NULL DEFAULT 'contractor',
    credit_score numeric(5, 1) NOT NULL DEFAULT 100 CHECK (credit_score BETWEEN 0 AND 1000),
    credit_grade text NOT NULL DEFAULT 'A',
    blacklisted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_enterprises (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    uscc char(18) NOT NULL REFERENCES enterprises (uscc),
    role text NOT NULL
        CHECK (role IN ('builder', 'general_contractor', 'subcontractor', 'supervisor')),
    PRIMARY KEY (project_id, uscc, role)
);

-- Persons: the 18-digit resident ID number is never stored in clear. A keyed hash finds a
-- person, the masked form is what views show, the encrypted form is for grants that allow it.
CREATE TABLE persons (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name text NOT NULL,
    id_number_hash bytea NOT NULL UNIQUE,
    id_number_masked char(18) NOT NULL,
    id_number_encrypted bytea NOT NULL,
    employer_uscc char(18) REFERENCES enterprises (uscc),
    trade text NOT NULL DEFAULT '',
    phone_masked text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'left')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_workers (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    person_id text NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    role text NOT NULL DEFAULT 'worker',
    joined_on date NOT NULL DEFAULT current_date,
    left_on date,
    PRIMARY KEY (project_id, person_id)
);

CREATE TABLE certificates (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id text NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    type text NOT NULL,                    -- e.g. special_operations:tower_crane_driver
    number text NOT NULL,
    issued_on date,
    expires_on date,
    UNIQUE (type, number)
);
CREATE INDEX certificates_person ON certificates (person_id);

CREATE TABLE devices (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),   -- topic segment and broker user
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('camera', 'tower_crane', 'hoist', 'foundation_pit',
        'high_formwork', 'dust', 'noise', 'gateway')),
    name text NOT NULL DEFAULT '',
    gateway_id text REFERENCES devices (id),   -- set when a gateway publishes for this device
    credential_hash text,                      -- broker password hash (mosquitto PBKDF2 form)
    placement jsonb NOT NULL DEFAULT '{}',     -- BIM / coordinates, see the BIM module
    rated jsonb NOT NULL DEFAULT '{}',         -- rated values, e.g. {"moment_tm": 160}
    active boolean NOT NULL DEFAULT true,
    last_seq bigint,
    last_seen timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_project ON devices (project_id);
CREATE INDEX devices_gateway ON devices (gateway_id) WHERE gateway_id IS NOT NULL;

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    role text NOT NULL CHECK (role IN ('admin', 'regulator', 'officer', 'enterprise', 'data_sharing')),
    district_code text REFERENCES districts (code),   -- regulator scope (NULL: whole city)
    enterprise_uscc char(18) REFERENCES enterprises (uscc),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_projects (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, project_id)
);
