-- +goose Up
CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    customer_id      uuid NOT NULL,
    payment_method   text NOT NULL,
    status           text NOT NULL CHECK (status IN ('PENDING', 'PAYMENT_APPROVED', 'INVENTORY_RESERVED',
                         'CONFIRMED', 'PAYMENT_FAILED', 'INVENTORY_FAILED', 'SHIPPING_FAILED', 'CANCELLED')),
    total_minor      bigint NOT NULL CHECK (total_minor >= 0),
    shipping_address jsonb,
    country_code     text,
    failure_reason   text,
    tracking_code    text,
    -- The client's idempotency key: one order per key.
    request_id       text UNIQUE,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- ListOrders pages newest first by (created_at, id), optionally per customer or status.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line             int NOT NULL,
    product_id       uuid NOT NULL,
    quantity         int NOT NULL CHECK (quantity > 0),
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line)
);

CREATE TABLE order_status_history (
    id         bigserial PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status     text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    changed_at timestamptz NOT NULL
);

CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, id);

-- +goose Down
DROP TABLE order_status_history;
DROP TABLE order_items;
DROP TABLE orders;
