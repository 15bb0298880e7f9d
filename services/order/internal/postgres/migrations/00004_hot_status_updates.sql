-- +goose Up
-- Every saga step updates an order's status. With status in an index, each of those updates
-- writes a new entry into every index of the table; without it, and with room left in each
-- page, PostgreSQL updates the row in place (a HOT update) and touches no index. ListOrders
-- by status alone scans the created_at index and filters: an operator's query, not the saga's.
DROP INDEX orders_status_created_idx;
ALTER TABLE orders SET (fillfactor = 80);

-- +goose Down
ALTER TABLE orders RESET (fillfactor);
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);
