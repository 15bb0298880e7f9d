// Package opstest gives tests the saga's four databases with the tables the audit reads, made
// from the fixed schemas rather than the services' migrations, and helpers to fill them.
package opstest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

const (
	orderDDL = `
CREATE TABLE orders (
	id uuid PRIMARY KEY, customer_id uuid NOT NULL, payment_method text NOT NULL, status text NOT NULL,
	total_minor bigint NOT NULL, shipping_address jsonb, country_code text NOT NULL DEFAULT '',
	failure_reason text NOT NULL DEFAULT '', tracking_code text NOT NULL DEFAULT '', request_id text UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_items (
	order_id uuid NOT NULL REFERENCES orders (id), line int NOT NULL, product_id uuid NOT NULL,
	quantity int NOT NULL, unit_price_minor bigint NOT NULL, PRIMARY KEY (order_id, line));
CREATE TABLE order_status_history (
	id bigserial PRIMARY KEY, order_id uuid NOT NULL, status text NOT NULL, reason text NOT NULL DEFAULT '',
	changed_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, id);`
	paymentDDL = `
CREATE TABLE payments (
	id uuid PRIMARY KEY, order_id uuid NOT NULL UNIQUE, method text NOT NULL, amount_minor bigint NOT NULL,
	status text NOT NULL, reason text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now());`
	inventoryDDL = `
CREATE TABLE products (
	id uuid PRIMARY KEY, name text NOT NULL DEFAULT '', quantity_total bigint NOT NULL, quantity_reserved bigint NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	CHECK (0 <= quantity_reserved AND quantity_reserved <= quantity_total));
CREATE TABLE reservations (
	id uuid PRIMARY KEY, order_id uuid NOT NULL UNIQUE, status text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE reservation_items (
	reservation_id uuid NOT NULL REFERENCES reservations (id), product_id uuid NOT NULL, quantity int NOT NULL,
	PRIMARY KEY (reservation_id, product_id));`
	// The outbox every service has (pkg/outbox's migration).
	outboxDDL = `
CREATE TABLE outbox (
	id bigserial PRIMARY KEY, event_id uuid NOT NULL, exchange text NOT NULL, routing_key text NOT NULL,
	message_type text NOT NULL, correlation_id text NOT NULL, body bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(), publish_after timestamptz NOT NULL DEFAULT now() + interval '5 seconds');`
	shippingDDL = `
CREATE TABLE shipments (
	id uuid PRIMARY KEY, order_id uuid NOT NULL UNIQUE, status text NOT NULL, tracking_code text NOT NULL DEFAULT '',
	freight_minor bigint NOT NULL DEFAULT 0, country_code text NOT NULL DEFAULT '', estimated_delivery timestamptz,
	reason text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now());`
)

// World is the four databases of one test.
type World struct {
	t testing.TB
	// URLs of the databases, for running ordersctl against them.
	OrderURL, PaymentURL, InventoryURL, ShippingURL string

	order, payment, inventory, shipping *pgxpool.Pool
}

// New creates the four databases with their tables; they are dropped at cleanup.
func New(t testing.TB) *World {
	t.Helper()
	w := &World{t: t}
	w.OrderURL, w.order = open(t, "order", orderDDL)
	w.PaymentURL, w.payment = open(t, "payment", paymentDDL)
	w.InventoryURL, w.inventory = open(t, "inventory", inventoryDDL)
	w.ShippingURL, w.shipping = open(t, "shipping", shippingDDL)
	return w
}

func open(t testing.TB, name, ddl string) (string, *pgxpool.Pool) {
	t.Helper()
	dbURL := testenv.DatabaseURL(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("open %s database: %v", name, err)
	}
	t.Cleanup(pool.Close) // before the drop: cleanups run last-in first-out
	if _, err := pool.Exec(ctx, ddl+outboxDDL); err != nil {
		t.Fatalf("create %s tables: %v", name, err)
	}
	return dbURL, pool
}

// Databases returns the databases for ops.Audit.
func (w *World) Databases() ops.Databases {
	return ops.Databases{Order: w.order, Payment: w.payment, Inventory: w.inventory, Shipping: w.shipping}
}

func (w *World) exec(pool *pgxpool.Pool, sql string, args ...any) {
	w.t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

func (w *World) pool(service string) *pgxpool.Pool {
	w.t.Helper()
	switch service {
	case "order":
		return w.order
	case "payment":
		return w.payment
	case "inventory":
		return w.inventory
	case "shipping":
		return w.shipping
	}
	w.t.Fatalf("no %s database", service)
	return nil
}

// Exec runs sql in the database of service (order, payment, inventory or shipping).
func (w *World) Exec(service, sql string, args ...any) {
	w.t.Helper()
	w.exec(w.pool(service), sql, args...)
}

// Outbox adds an unpublished event of orderID to service's outbox and returns its event id.
func (w *World) Outbox(service, orderID, routingKey, messageType string) string {
	w.t.Helper()
	id := uuid.NewString()
	w.exec(w.pool(service), `INSERT INTO outbox (event_id, exchange, routing_key, message_type, correlation_id, body)
		VALUES ($1, $2, $3, $4, $5, '\x00')`, id, service+".exchange", routingKey, messageType, orderID)
	return id
}

// History adds a status change of orderID.
func (w *World) History(orderID, status, reason string) {
	w.t.Helper()
	w.exec(w.order, `INSERT INTO order_status_history (order_id, status, reason) VALUES ($1, $2, $3)`, orderID, status, reason)
}

// Fill adds n consistent CONFIRMED orders of one product, created one every step going back
// from newest, with their payments, reservations and shipments, in a few statements per
// database (generate_series): a million takes a minute or two. The product's reserved stock
// matches. It returns the product id.
func (w *World) Fill(n int, newest time.Time, step time.Duration) string {
	w.t.Helper()
	product := w.Product(int64(n)+1, int64(n))
	// Ids are derived from i, so that each database makes the same ones.
	const orderID = `md5('order' || i)::uuid`
	w.exec(w.order, `INSERT INTO orders (id, customer_id, payment_method, status, total_minor, country_code, created_at, updated_at)
		SELECT `+orderID+`, md5('customer' || i % 1000)::uuid, 'credit_card', 'CONFIRMED', 500, 'DE',
			$2::timestamptz - i * $3::interval, $2::timestamptz - i * $3::interval
		FROM generate_series(1, $1) i`, n, newest, step)
	w.exec(w.order, `INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_minor)
		SELECT `+orderID+`, 1, $2, 1, 500 FROM generate_series(1, $1) i`, n, product)
	w.exec(w.order, `INSERT INTO order_status_history (order_id, status, changed_at)
		SELECT `+orderID+`, 'CONFIRMED', $2::timestamptz - i * $3::interval FROM generate_series(1, $1) i`, n, newest, step)
	w.exec(w.payment, `INSERT INTO payments (id, order_id, method, amount_minor, status, created_at, updated_at)
		SELECT md5('payment' || i)::uuid, `+orderID+`, 'credit_card', 500, 'APPROVED',
			$2::timestamptz - i * $3::interval, $2::timestamptz - i * $3::interval
		FROM generate_series(1, $1) i`, n, newest, step)
	w.exec(w.inventory, `INSERT INTO reservations (id, order_id, status, created_at, updated_at)
		SELECT md5('reservation' || i)::uuid, `+orderID+`, 'RESERVED', $2::timestamptz - i * $3::interval, $2::timestamptz - i * $3::interval
		FROM generate_series(1, $1) i`, n, newest, step)
	w.exec(w.inventory, `INSERT INTO reservation_items (reservation_id, product_id, quantity)
		SELECT md5('reservation' || i)::uuid, $2, 1 FROM generate_series(1, $1) i`, n, product)
	w.exec(w.shipping, `INSERT INTO shipments (id, order_id, status, tracking_code, freight_minor, country_code, created_at)
		SELECT md5('shipment' || i)::uuid, `+orderID+`, 'SCHEDULED', 'TRK-' || i, 1150, 'DE', $2::timestamptz - i * $3::interval
		FROM generate_series(1, $1) i`, n, newest, step)
	for _, pool := range []*pgxpool.Pool{w.order, w.payment, w.inventory, w.shipping} {
		w.exec(pool, `ANALYZE`)
	}
	return product
}

// Order adds an order created now; see OrderAt.
func (w *World) Order(status string, items ...ops.Item) string {
	w.t.Helper()
	return w.OrderAt(status, time.Now(), items...)
}

// OrderAt adds an order with status, creation time and items, and returns its id.
func (w *World) OrderAt(status string, createdAt time.Time, items ...ops.Item) string {
	w.t.Helper()
	id := uuid.NewString()
	w.exec(w.order, `INSERT INTO orders (id, customer_id, payment_method, status, total_minor, country_code, created_at, updated_at)
		VALUES ($1, $2, 'credit_card', $3, 1000, 'DE', $4, $4)`, id, uuid.NewString(), status, createdAt)
	for i, it := range items {
		w.exec(w.order, `INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_minor) VALUES ($1, $2, $3, $4, 500)`,
			id, i+1, it.ProductID, it.Quantity)
	}
	return id
}

// Payment adds a payment of orderID and returns its id.
func (w *World) Payment(orderID, status string) string {
	w.t.Helper()
	id := uuid.NewString()
	w.exec(w.payment, `INSERT INTO payments (id, order_id, method, amount_minor, status) VALUES ($1, $2, 'credit_card', 1000, $3)`,
		id, orderID, status)
	return id
}

// Reservation adds a reservation of orderID with its items and returns its id.
func (w *World) Reservation(orderID, status string, items ...ops.Item) string {
	w.t.Helper()
	id := uuid.NewString()
	w.exec(w.inventory, `INSERT INTO reservations (id, order_id, status) VALUES ($1, $2, $3)`, id, orderID, status)
	for _, it := range items {
		w.exec(w.inventory, `INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES ($1, $2, $3)`,
			id, it.ProductID, it.Quantity)
	}
	return id
}

// Shipment adds a shipment of orderID and returns its id.
func (w *World) Shipment(orderID, status string) string {
	w.t.Helper()
	id := uuid.NewString()
	w.exec(w.shipping, `INSERT INTO shipments (id, order_id, status) VALUES ($1, $2, $3)`, id, orderID, status)
	return id
}

// Product adds a product with its total and reserved stock and returns its id.
func (w *World) Product(total, reserved int64) string {
	w.t.Helper()
	id := uuid.NewString()
	w.exec(w.inventory, `INSERT INTO products (id, name, quantity_total, quantity_reserved) VALUES ($1, 'test', $2, $3)`,
		id, total, reserved)
	return id
}

// SetReserved sets a product's reserved stock.
func (w *World) SetReserved(productID string, reserved int64) {
	w.t.Helper()
	w.exec(w.inventory, `UPDATE products SET quantity_reserved = $2 WHERE id = $1`, productID, reserved)
}

// Consistent fills the world with one order of each way a saga ends, all consistent, and
// returns the id of the confirmed one.
func (w *World) Consistent() (confirmed string) {
	w.t.Helper()
	p1, p2 := w.Product(100, 3), w.Product(10, 0)
	confirmed = w.Order("CONFIRMED", ops.Item{ProductID: p1, Quantity: 2})
	w.Payment(confirmed, "APPROVED")
	w.Reservation(confirmed, "RESERVED", ops.Item{ProductID: p1, Quantity: 2})
	w.Shipment(confirmed, "SCHEDULED")
	o := w.Order("CONFIRMED", ops.Item{ProductID: p1, Quantity: 1})
	w.Payment(o, "APPROVED")
	w.Reservation(o, "RESERVED", ops.Item{ProductID: p1, Quantity: 1})
	w.Shipment(o, "SCHEDULED")
	// Declined payment.
	o = w.Order("PAYMENT_FAILED", ops.Item{ProductID: p1, Quantity: 1})
	w.Payment(o, "DECLINED")
	// Too little stock: reversed payment, no reservation.
	o = w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 50})
	w.Payment(o, "REVERSED")
	// The carrier failed: stock released, payment reversed.
	o = w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 1})
	w.Payment(o, "REVERSED")
	w.Reservation(o, "RELEASED", ops.Item{ProductID: p2, Quantity: 1})
	w.Shipment(o, "FAILED")
	return confirmed
}
