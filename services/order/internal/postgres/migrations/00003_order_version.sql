-- +goose Up
-- How many status changes an order has had: a watcher that knows an order's version applies the
-- next change from the status feed without reading the order again.
ALTER TABLE orders ADD COLUMN version int NOT NULL DEFAULT 1;
UPDATE orders o SET version = h.n
FROM (SELECT order_id, count(*) AS n FROM order_status_history GROUP BY order_id) h
WHERE h.order_id = o.id;

-- +goose Down
ALTER TABLE orders DROP COLUMN version;
