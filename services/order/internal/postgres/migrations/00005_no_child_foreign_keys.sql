-- +goose Up
-- An order's items and status history are written only together with it (in CreateOrder's
-- one statement) or under its row lock (a saga step), and orders are never deleted. The foreign
-- keys checked nothing those writes do not already ensure, at the price of a lookup of the
-- order, planned and run, for every item and every status change.
-- The previous release writes these tables while this runs. Dropping a foreign key locks the
-- child table, then the parent; its transactions lock the parent, then the child, and one of
-- them deadlocked with this (the new replica then exited). The parent first, as they do, held
-- the few milliseconds this takes.
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;
ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
ALTER TABLE order_status_history DROP CONSTRAINT order_status_history_order_id_fkey;

-- +goose Down
ALTER TABLE order_status_history ADD CONSTRAINT order_status_history_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
