-- BIM: imported IFC models per project (every version kept, with its source and sha256), the
-- spatial tree, elements, the work schedule, and placements of devices and zones on the model.
-- Tree, elements and tasks belong to one model version; placements belong to the project and
-- name GlobalIds, so they outlive a version and are re-checked when a new one is imported.

CREATE TABLE bim_models (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version integer NOT NULL CHECK (version >= 1),
    sha256 char(64) NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    file_name text NOT NULL,
    file_size bigint NOT NULL CHECK (file_size > 0),
    schema text NOT NULL,                      -- as in the file header, e.g. IFC4X3_ADD2
    application text NOT NULL DEFAULT '',      -- authoring tool from the header
    length_unit_m double precision NOT NULL,   -- metres per project length unit
    counts jsonb NOT NULL DEFAULT '{}',        -- storeys, spaces, elements by class, tasks
    source bytea NOT NULL,                     -- the IFC file itself: geometry is made from it
    imported_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, version)
);
CREATE INDEX bim_models_sha256 ON bim_models (sha256);

-- Spatial structure: project, site, building (or other facility), part, storey, space, zone.
-- building_id / storey_id are the enclosing ones (a storey's own id for a storey), so a lookup
-- needs no recursive walk. Geometry-derived values are in metres in the model's world frame.
CREATE TABLE bim_nodes (
    model_id bigint NOT NULL REFERENCES bim_models (id) ON DELETE CASCADE,
    global_id text NOT NULL,
    parent_id text,
    kind text NOT NULL
        CHECK (kind IN ('project', 'site', 'building', 'part', 'storey', 'space', 'zone')),
    ifc_class text NOT NULL,
    name text,
    long_name text,
    building_id text,
    storey_id text,
    position integer NOT NULL,                 -- order among siblings (storeys: by elevation)
    elevation double precision,                -- storeys: world z of the storey, metres
    footprint jsonb,                           -- spaces: GeoJSON polygon, world x/y in metres
    z_min double precision,
    z_max double precision,
    PRIMARY KEY (model_id, global_id)
);

CREATE TABLE bim_elements (
    model_id bigint NOT NULL REFERENCES bim_models (id) ON DELETE CASCADE,
    global_id text NOT NULL,
    ifc_class text NOT NULL,
    name text,
    object_type text,
    tag text,
    container_id text,                         -- the spatial node that contains it
    building_id text,
    storey_id text,
    space_id text,
    quantities jsonb NOT NULL DEFAULT '{}',    -- {quantity set: {name: value in SI units}}
    PRIMARY KEY (model_id, global_id)
);
CREATE INDEX bim_elements_storey ON bim_elements (model_id, storey_id);
CREATE INDEX bim_elements_class ON bim_elements (model_id, ifc_class);

-- IfcTask work schedule (IFC4 and later: IfcTaskTime; IFC2X3 tasks carry no times here).
CREATE TABLE bim_tasks (
    model_id bigint NOT NULL REFERENCES bim_models (id) ON DELETE CASCADE,
    global_id text NOT NULL,
    parent_id text,                            -- nesting task (IfcRelNests)
    schedule_id text,                          -- IfcWorkSchedule of its root task
    schedule_name text,
    identification text,
    name text,
    is_milestone boolean NOT NULL DEFAULT false,
    predefined_type text,
    schedule_start timestamp,                  -- IFC date-times carry no zone: site local time
    schedule_finish timestamp,
    schedule_duration text,                    -- ISO 8601 duration as written in the file
    predecessors text[] NOT NULL DEFAULT '{}', -- IfcRelSequence: tasks that come before
    products text[] NOT NULL DEFAULT '{}',     -- GlobalIds of the products it builds or uses
    position integer NOT NULL,
    PRIMARY KEY (model_id, global_id)
);

-- Placements: a device at a node/element or at model coordinates; a named zone (a danger zone
-- by default) as a space, an element's footprint or a circle (crane radius); a camera's image
-- zone linked to a named zone. status 'stale': the target's GlobalId vanished in a later
-- version; the row is kept (with the version it last resolved against) for someone to re-place.
CREATE TABLE bim_placements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('device', 'zone', 'camera_zone')),
    device_id text REFERENCES devices (id) ON DELETE CASCADE,
    zone text,                                 -- zone name; camera_zone: the image zone's name
    danger boolean NOT NULL DEFAULT true,
    target_id text,                            -- GlobalId of a spatial node or an element
    x double precision,
    y double precision,
    z double precision,
    radius double precision CHECK (radius > 0),
    linked_zone_id bigint REFERENCES bim_placements (id) ON DELETE CASCADE,
    footprint jsonb,                           -- zones: GeoJSON outline against resolved_model_id
    z_min double precision,
    z_max double precision,
    status text NOT NULL DEFAULT 'resolved' CHECK (status IN ('resolved', 'stale')),
    resolved_model_id bigint REFERENCES bim_models (id) ON DELETE SET NULL,
    stale_since_model_id bigint REFERENCES bim_models (id) ON DELETE SET NULL,
    note text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((x IS NULL) = (y IS NULL) AND (x IS NULL) = (z IS NULL)),
    CHECK (kind <> 'device' OR (device_id IS NOT NULL AND zone IS NULL
        AND (target_id IS NOT NULL) <> (x IS NOT NULL))),
    CHECK (kind <> 'zone' OR (zone IS NOT NULL AND device_id IS NULL
        AND (target_id IS NOT NULL) <> (x IS NOT NULL AND radius IS NOT NULL))),
    CHECK (kind <> 'camera_zone' OR (device_id IS NOT NULL AND zone IS NOT NULL
        AND linked_zone_id IS NOT NULL AND target_id IS NULL AND x IS NULL))
);
CREATE UNIQUE INDEX bim_placements_device ON bim_placements (device_id) WHERE kind = 'device';
CREATE UNIQUE INDEX bim_placements_zone ON bim_placements (project_id, zone) WHERE kind = 'zone';
CREATE UNIQUE INDEX bim_placements_camera_zone ON bim_placements (device_id, zone)
    WHERE kind = 'camera_zone';
CREATE INDEX bim_placements_project ON bim_placements (project_id);
