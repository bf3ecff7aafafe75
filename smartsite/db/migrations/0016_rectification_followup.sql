-- Rectification orders of spot checks get their follow-up: the site reports the order done
-- (with a note), a regulator verifies it (done) or sends it back (open again).
ALTER TABLE rectification_orders
    ADD COLUMN reported_at timestamptz,
    ADD COLUMN reported_by text,
    ADD COLUMN report_note text,
    ADD COLUMN verified_at timestamptz,
    ADD COLUMN verified_by text,
    ADD COLUMN verify_note text;
ALTER TABLE rectification_orders DROP CONSTRAINT rectification_orders_status_check;
ALTER TABLE rectification_orders ADD CONSTRAINT rectification_orders_status_check
    CHECK (status IN ('open', 'reported', 'done'));
