-- Face enrolments: a worker's face embeddings (biometric data) kept only with a recorded
-- consent, encrypted at rest (Fernet, purpose "face"), never returned by the API, and deleted
-- when the enrolment is removed or the person leaves (status 'left').

CREATE TABLE face_enrolments (
    person_id text PRIMARY KEY REFERENCES persons (id) ON DELETE CASCADE,
    embeddings_encrypted bytea NOT NULL,       -- float32 [photo_count x 128], Fernet-encrypted
    model_sha256 char(64) NOT NULL CHECK (model_sha256 ~ '^[0-9a-f]{64}$'),
    photo_count int NOT NULL CHECK (photo_count BETWEEN 1 AND 5),
    consent_given_by text NOT NULL CHECK (length(btrim(consent_given_by)) BETWEEN 1 AND 200),
    consent_given_at timestamptz NOT NULL,
    consent_method text NOT NULL CHECK (consent_method IN ('written', 'electronic')),
    consent_document text NOT NULL CHECK (length(btrim(consent_document)) BETWEEN 1 AND 200),
    recorded_by text NOT NULL,
    enrolled_at timestamptz NOT NULL DEFAULT now()
);

-- Who enrolled or removed whose face, when and why: no biometric data, kept after removal
-- (the accountability of processing biometric data outlives the data).
CREATE TABLE face_enrolment_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id text NOT NULL,
    action text NOT NULL CHECK (action IN ('enrolled', 'removed', 'removed_left')),
    actor text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX face_enrolment_log_person ON face_enrolment_log (person_id, at);

-- A person who leaves loses the enrolment in the same statement, whatever path set the status
-- (import, API, SQL).
CREATE FUNCTION face_enrolment_drop_on_leave() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (DELETE FROM face_enrolments WHERE person_id = NEW.id RETURNING person_id)
    INSERT INTO face_enrolment_log (person_id, action, actor)
    SELECT person_id, 'removed_left', 'system' FROM gone;
    RETURN NEW;
END $$;

CREATE TRIGGER persons_left_drops_face
    AFTER UPDATE OF status ON persons
    FOR EACH ROW WHEN (NEW.status = 'left' AND OLD.status IS DISTINCT FROM 'left')
    EXECUTE FUNCTION face_enrolment_drop_on_leave();

-- Nobody enrols a person who has left.
CREATE FUNCTION face_enrolment_refuse_left() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM persons WHERE id = NEW.person_id AND status = 'left') THEN
        RAISE EXCEPTION 'person % has left: no face enrolment', NEW.person_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER face_enrolments_not_left
    BEFORE INSERT OR UPDATE ON face_enrolments
    FOR EACH ROW EXECUTE FUNCTION face_enrolment_refuse_left();
