-- +goose Up
-- One payment per order: the unique order_id is what makes a repeated order.created harmless.
CREATE TABLE payments (
    id           uuid PRIMARY KEY,
    order_id     uuid NOT NULL UNIQUE,
    method       text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    status       text NOT NULL CHECK (status IN ('APPROVED', 'DECLINED', 'REVERSED')),
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE payments;
