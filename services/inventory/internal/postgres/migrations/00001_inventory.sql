-- +goose Up
CREATE TABLE products (
    id                uuid PRIMARY KEY,
    name              text NOT NULL DEFAULT '',
    quantity_total    bigint NOT NULL,
    quantity_reserved bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- The last guard against selling stock that is not there.
    CONSTRAINT products_stock_check CHECK (0 <= quantity_reserved AND quantity_reserved <= quantity_total)
);

-- One reservation per order; a failed reservation leaves no rows.
CREATE TABLE reservations (
    id         uuid PRIMARY KEY,
    order_id   uuid NOT NULL UNIQUE,
    status     text NOT NULL CHECK (status IN ('RESERVED', 'RELEASED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservation_items (
    reservation_id uuid NOT NULL REFERENCES reservations (id),
    product_id     uuid NOT NULL,
    quantity       int NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);

-- +goose Down
DROP TABLE reservation_items;
DROP TABLE reservations;
DROP TABLE products;
