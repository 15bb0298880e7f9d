-- The orders not terminal yet, with their creation time: the deadline sweep and the pending
-- gauges read this set instead of walking the orders table from a created_at watermark. A
-- watermark skips an order whose insert becomes visible after the sweep passed its created_at
-- (a CreateOrder retried through a failover commits long after order.New stamped it); this set
-- holds every open order however late it commits, and stays as small as the orders in flight.
--
-- Triggers keep it, so that every writer does, the previous release running beside this one
-- included. The status itself stays out of every index, so that a saga step still updates an
-- order in place (HOT, migration 00004): only the step that ends an order touches this table.

-- +goose Up
CREATE TABLE open_orders (
    order_id   uuid PRIMARY KEY,
    created_at timestamptz NOT NULL
);
CREATE INDEX open_orders_created_idx ON open_orders (created_at, order_id);

-- One statement for each insert of a batch of orders (CreateOrder's group commit).
-- +goose StatementBegin
CREATE FUNCTION open_orders_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO open_orders (order_id, created_at)
    SELECT id, created_at FROM added WHERE status NOT IN ('CONFIRMED', 'PAYMENT_FAILED', 'CANCELLED');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER orders_open_add AFTER INSERT ON orders REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION open_orders_add();

-- Called only for the update that ends an order: the WHEN clause filters every other step.
-- +goose StatementBegin
CREATE FUNCTION open_orders_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM open_orders WHERE order_id = NEW.id;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER orders_open_remove AFTER UPDATE OF status ON orders FOR EACH ROW
    WHEN (NEW.status IN ('CONFIRMED', 'PAYMENT_FAILED', 'CANCELLED'))
    EXECUTE FUNCTION open_orders_remove();

-- The triggers exist before the copy, and their lock holds off writers until this commits: no
-- order is missed between the two.
INSERT INTO open_orders (order_id, created_at)
SELECT id, created_at FROM orders WHERE status NOT IN ('CONFIRMED', 'PAYMENT_FAILED', 'CANCELLED');

-- +goose Down
DROP TRIGGER orders_open_remove ON orders;
DROP TRIGGER orders_open_add ON orders;
DROP FUNCTION open_orders_remove();
DROP FUNCTION open_orders_add();
DROP TABLE open_orders;
