-- The gateways' galleries carry each enrolled worker's trade (FaceGallery.roles: zones'
-- allowed_roles let a recognised rigger into the rigging area), so a changed trade changes
-- the gallery: announce the person's projects as 0017 does for enrolments.
CREATE FUNCTION persons_trade_gallery_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM face_enrolments WHERE person_id = NEW.id) THEN
        PERFORM face_gallery_notify_person(NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persons_trade_gallery
    AFTER UPDATE OF trade ON persons
    FOR EACH ROW WHEN (OLD.trade IS DISTINCT FROM NEW.trade)
    EXECUTE FUNCTION persons_trade_gallery_notify();
