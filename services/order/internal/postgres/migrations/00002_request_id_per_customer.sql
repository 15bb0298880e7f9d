-- Idempotency keys belong to the customer that sent them: one order per (customer, key), not one
-- per key across all customers. Each keyed order also keeps the fingerprint of its request, so
-- that the same key with a different request is refused instead of answered with the old order.

-- +goose Up
-- order_request_fingerprint(id) is order.(*Order).RequestFingerprint in SQL, computed from the
-- stored order: SHA-256 over length-prefixed fields. It fills in the orders stored before this
-- migration; the service computes new fingerprints in Go, and a test keeps the two equal.
-- +goose StatementBegin
CREATE FUNCTION order_fingerprint_field(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT octet_length(v)::text || ':' || v $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION order_request_fingerprint(order_id uuid) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(convert_to(
        order_fingerprint_field('order.v1.CreateOrder')
        || order_fingerprint_field(o.customer_id::text)
        || order_fingerprint_field(o.payment_method)
        || order_fingerprint_field((SELECT count(*) FROM order_items i WHERE i.order_id = o.id)::text)
        || COALESCE((SELECT string_agg(order_fingerprint_field(i.product_id::text)
                || order_fingerprint_field(i.quantity::text)
                || order_fingerprint_field(i.unit_price_minor::text), '' ORDER BY i.line)
            FROM order_items i WHERE i.order_id = o.id), '')
        || order_fingerprint_field(COALESCE(o.shipping_address ->> 'recipient', ''))
        || order_fingerprint_field(COALESCE(o.shipping_address ->> 'line1', ''))
        || order_fingerprint_field(COALESCE(o.shipping_address ->> 'line2', ''))
        || order_fingerprint_field(COALESCE(o.shipping_address ->> 'city', ''))
        || order_fingerprint_field(COALESCE(o.shipping_address ->> 'postal_code', ''))
        || order_fingerprint_field(COALESCE(o.shipping_address ->> 'country_code', '')),
        'UTF8'))
    FROM orders o WHERE o.id = order_request_fingerprint.order_id
$$;
-- +goose StatementEnd

ALTER TABLE orders ADD COLUMN request_fingerprint bytea;
UPDATE orders SET request_fingerprint = order_request_fingerprint(id) WHERE request_id IS NOT NULL;
ALTER TABLE orders
    ADD CONSTRAINT orders_customer_request_key UNIQUE (customer_id, request_id),
    ADD CONSTRAINT orders_request_fingerprint_check CHECK (request_id IS NULL OR request_fingerprint IS NOT NULL),
    DROP CONSTRAINT orders_request_id_key;

-- +goose Down
-- Fails when two customers have since used the same key: the old rule cannot hold them both.
ALTER TABLE orders
    ADD CONSTRAINT orders_request_id_key UNIQUE (request_id),
    DROP CONSTRAINT orders_request_fingerprint_check,
    DROP CONSTRAINT orders_customer_request_key;
ALTER TABLE orders DROP COLUMN request_fingerprint;
DROP FUNCTION order_request_fingerprint(uuid);
DROP FUNCTION order_fingerprint_field(text);
