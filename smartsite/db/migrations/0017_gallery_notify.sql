-- The gateways' face galleries follow enrolment: every change that can alter a project's
-- gallery (server.faces.project_gallery: the enrolled, active workers currently on the
-- project; server.edge_config: its active gateways) announces the project on the
-- 'face_gallery' channel, and the hub's gallery sync (server/gallery_sync.py) republishes the
-- retained gallery of that project's gateways. A removed enrolment or a worker who leaves
-- (0015's trigger deletes the enrolment) thus leaves the gateways within seconds, not at the
-- next `smartsite edge push-config`. NOTIFY is sent at commit, once per project and
-- transaction (PostgreSQL folds identical notifications), so bulk imports cost one each.

CREATE FUNCTION face_gallery_notify_person(person text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('face_gallery', project_id) FROM project_workers WHERE person_id = person;
END $$;

-- An enrolment added, replaced or removed (also by 0015's trigger when the person leaves):
-- every project the person works on.
CREATE FUNCTION face_enrolments_gallery_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM face_gallery_notify_person(OLD.person_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM face_gallery_notify_person(NEW.person_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER face_enrolments_gallery
    AFTER INSERT OR UPDATE OR DELETE ON face_enrolments
    FOR EACH ROW EXECUTE FUNCTION face_enrolments_gallery_notify();

-- A worker joining or leaving a project (or the row moving): the projects on both sides.
-- Unconditional on an enrolment existing, so that the order of cascaded deletes (a person
-- deleted takes both rows) cannot hide a change.
CREATE FUNCTION project_workers_gallery_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('face_gallery', OLD.project_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('face_gallery', NEW.project_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER project_workers_gallery
    AFTER INSERT OR DELETE ON project_workers
    FOR EACH ROW EXECUTE FUNCTION project_workers_gallery_notify();

CREATE TRIGGER project_workers_gallery_update
    AFTER UPDATE OF project_id, person_id, left_on ON project_workers
    FOR EACH ROW
    WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id
          OR OLD.person_id IS DISTINCT FROM NEW.person_id
          OR OLD.left_on IS DISTINCT FROM NEW.left_on)
    EXECUTE FUNCTION project_workers_gallery_notify();

-- A gateway registered, moved or (de)activated: its project gets its gallery now, not at the
-- next hourly resync. (Heartbeat columns such as last_seen do not fire it.)
CREATE FUNCTION devices_gallery_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.kind = 'gateway' THEN
        PERFORM pg_notify('face_gallery', OLD.project_id);
    END IF;
    IF NEW.kind = 'gateway' THEN
        PERFORM pg_notify('face_gallery', NEW.project_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER devices_gallery_insert
    AFTER INSERT ON devices
    FOR EACH ROW WHEN (NEW.kind = 'gateway')
    EXECUTE FUNCTION devices_gallery_notify();

CREATE TRIGGER devices_gallery_update
    AFTER UPDATE OF project_id, kind, active ON devices
    FOR EACH ROW
    WHEN ((OLD.kind = 'gateway' OR NEW.kind = 'gateway')
          AND (OLD.project_id IS DISTINCT FROM NEW.project_id
               OR OLD.kind IS DISTINCT FROM NEW.kind
               OR OLD.active IS DISTINCT FROM NEW.active))
    EXECUTE FUNCTION devices_gallery_notify();
