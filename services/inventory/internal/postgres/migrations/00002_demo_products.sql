-- +goose Up
-- Demo products, so that the README's example works on a fresh start. Stock already changed by
-- an operator is left alone.
INSERT INTO products (id, name, quantity_total) VALUES
    ('00000000-0000-0000-0000-000000000001', 'Demo keyboard', 1000000),
    ('00000000-0000-0000-0000-000000000002', 'Demo mouse', 100),
    ('00000000-0000-0000-0000-000000000003', 'Demo monitor', 10)
ON CONFLICT (id) DO NOTHING;

-- +goose Down
DELETE FROM products
WHERE id IN ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000003')
  AND quantity_reserved = 0;
