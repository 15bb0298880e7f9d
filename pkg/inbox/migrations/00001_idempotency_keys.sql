-- +goose Up
-- The inbox: one row per event this service has taken effect for.
CREATE TABLE idempotency_keys (
    event_id     uuid PRIMARY KEY,
    queue        text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE idempotency_keys;
