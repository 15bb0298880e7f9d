-- +goose NO TRANSACTION
-- The retention deletes the oldest entries in small batches by processed_at. Built concurrently,
-- so that a large inbox keeps taking claims meanwhile; an index left invalid by an interrupted
-- build is dropped first.

-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_processed_at_idx;
CREATE INDEX CONCURRENTLY idempotency_keys_processed_at_idx ON idempotency_keys (processed_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_processed_at_idx;
