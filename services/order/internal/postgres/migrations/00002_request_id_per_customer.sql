-- Idempotency keys belong to the customer that sent them: one order per (customer, key), not one
-- per key across all customers. Each keyed order also keeps the fingerprint of its request, so
-- that the same key with a different request is refused instead of answered with the old order.
--
-- This is the expand half (release 2). Release 1 runs beside it during the rolling update and
-- inserts with ON CONFLICT (request_id), without a fingerprint: so the global key
-- orders_request_id_key stays, and nothing requires a fingerprint. The per-customer key is added
-- beside it, as the ON CONFLICT target of this release's inserts; while both exist, a key another
-- customer already used is refused (ALREADY_EXISTS naming request_id). Dropping the global key and
-- requiring the fingerprint is a later contract step (marked release 2: it lands once release 2 is
-- the previous release): docs/upgrades.md, "Pending contract steps". This migration was rewritten
-- to keep the global key before release 2 was cut: no release shipped the earlier version (a
-- development database that ran it is recreated, goose does not run a changed migration again).

-- +goose Up
-- order_request_fingerprint(id) is order.(*Order).RequestFingerprint in SQL, computed from the
-- stored order: SHA-256 over length-prefixed fields. It fills in the orders stored without one
-- (before this migration, and by release 1 beside it); the service computes new fingerprints in
-- Go, and a test keeps the two equal.
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

-- Release 1 writes orders, then their items, and updates orders' status while this runs. The
-- backfill below locks rows of orders and the ALTER the whole table: the table first, as those
-- transactions take it, so that neither waits for the other holding what the other needs.
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;
ALTER TABLE orders ADD COLUMN request_fingerprint bytea;
-- Orders that release 1 stores from now on have none: this release computes theirs when it reads
-- them (COALESCE with order_request_fingerprint), and the contract step fills them in.
UPDATE orders SET request_fingerprint = order_request_fingerprint(id) WHERE request_id IS NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_customer_request_key UNIQUE (customer_id, request_id);

-- +goose Down
ALTER TABLE orders DROP CONSTRAINT orders_customer_request_key;
ALTER TABLE orders DROP COLUMN request_fingerprint;
DROP FUNCTION order_request_fingerprint(uuid);
DROP FUNCTION order_fingerprint_field(text);
