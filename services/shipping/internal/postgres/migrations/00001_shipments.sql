-- +goose Up
-- One shipment per order: the unique order_id is what makes a repeated inventory.reserved harmless.
-- A failed shipment has a reason and neither tracking code nor delivery estimate.
CREATE TABLE shipments (
    id                 uuid PRIMARY KEY,
    order_id           uuid NOT NULL UNIQUE,
    status             text NOT NULL CHECK (status IN ('SCHEDULED', 'FAILED')),
    tracking_code      text,
    freight_minor      bigint NOT NULL CHECK (freight_minor >= 0),
    country_code       text NOT NULL,
    estimated_delivery timestamptz,
    reason             text,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE shipments;
