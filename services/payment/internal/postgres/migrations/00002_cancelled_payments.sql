-- +goose Up
-- A CANCELLED payment is the tombstone of an order cancelled at its saga deadline before it was
-- charged: it takes the order's one payment, so that a late order.created charges nothing.
ALTER TABLE payments DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('APPROVED', 'DECLINED', 'REVERSED', 'CANCELLED'));

-- +goose Down
DELETE FROM payments WHERE status = 'CANCELLED';
ALTER TABLE payments DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('APPROVED', 'DECLINED', 'REVERSED'));
