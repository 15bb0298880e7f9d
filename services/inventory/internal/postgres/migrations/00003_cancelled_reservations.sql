-- +goose Up
-- A CANCELLED reservation is the tombstone of an order cancelled at its saga deadline before any
-- stock was reserved for it: it holds no items and takes the order's one reservation, so that a
-- late payment.approved reserves nothing.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check,
    ADD CONSTRAINT reservations_status_check CHECK (status IN ('RESERVED', 'RELEASED', 'CANCELLED'));

-- +goose Down
DELETE FROM reservations WHERE status = 'CANCELLED';
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check,
    ADD CONSTRAINT reservations_status_check CHECK (status IN ('RESERVED', 'RELEASED'));
