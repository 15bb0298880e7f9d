-- +goose Up
-- A CANCELLED shipment belongs to an order cancelled at its saga deadline: scheduled and then
-- called off, or a tombstone taking the order's one shipment before anything was scheduled, so
-- that a late inventory.reserved ships nothing.
ALTER TABLE shipments DROP CONSTRAINT shipments_status_check,
    ADD CONSTRAINT shipments_status_check CHECK (status IN ('SCHEDULED', 'FAILED', 'CANCELLED'));

-- +goose Down
DELETE FROM shipments WHERE status = 'CANCELLED' AND tracking_code IS NULL;
UPDATE shipments SET status = 'FAILED' WHERE status = 'CANCELLED';
ALTER TABLE shipments DROP CONSTRAINT shipments_status_check,
    ADD CONSTRAINT shipments_status_check CHECK (status IN ('SCHEDULED', 'FAILED'));
