-- +goose Up
-- contract: release 1 never reads or writes outbox.attempts (it names every column it selects
-- and inserts): dropping it breaks nothing that runs beside this release (docs/upgrades.md).
-- The relay of the process that committed an event publishes it at once, from memory. The poll,
-- a safety net for crashed replicas and failed publishes, takes only rows whose publish_after
-- has passed, and leases them by moving it forward: no transaction is held while publishing.
ALTER TABLE outbox ADD COLUMN publish_after timestamptz NOT NULL DEFAULT now() + interval '5 seconds';
ALTER TABLE outbox DROP COLUMN attempts;
CREATE INDEX outbox_publish_after_idx ON outbox (publish_after);

-- +goose Down
DROP INDEX outbox_publish_after_idx;
ALTER TABLE outbox ADD COLUMN attempts int NOT NULL DEFAULT 0;
ALTER TABLE outbox DROP COLUMN publish_after;
