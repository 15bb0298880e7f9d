package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newShipment(t *testing.T, orderID, country string) *shipping.Shipment {
	t.Helper()
	c, err := shipping.NewCarrier(1000, 0, shipping.Env{Now: func() time.Time { return now }, Random: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Schedule(uuid.NewString(), orderID, country, 2)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// insert stores shipments in a transaction of its own and returns the ids stored.
func insert(t *testing.T, pool *pgxpool.Pool, shipments ...*shipping.Shipment) map[string]bool {
	t.Helper()
	ctx := context.Background()
	var stored map[string]bool
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		stored, err = postgres.Bind(tx).Insert(ctx, shipments)
		return err
	})
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return stored
}

func TestInsert(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "shippingrepo", postgres.Migrations...)
	ctx := context.Background()
	scheduled, failed := newShipment(t, uuid.NewString(), "BR"), newShipment(t, uuid.NewString(), "AQ")

	if stored := insert(t, pool, scheduled, failed); len(stored) != 2 || !stored[scheduled.ID()] || !stored[failed.ID()] {
		t.Fatalf("Insert = %v; want both stored", stored)
	}
	// The same shipment again, and a second one for an order already shipped: nothing more.
	again := newShipment(t, scheduled.OrderID(), "PT")
	if stored := insert(t, pool, scheduled, again); len(stored) != 0 {
		t.Fatalf("Insert again = %v; want none stored", stored)
	}
	// Two new shipments of one order in one call: one is stored.
	orderID := uuid.NewString()
	if stored := insert(t, pool, newShipment(t, orderID, "BR"), newShipment(t, orderID, "PT")); len(stored) != 1 {
		t.Fatalf("Insert of two shipments of one order = %v; want one stored", stored)
	}
	if stored := insert(t, pool); len(stored) != 0 {
		t.Errorf("Insert of nothing = %v", stored)
	}

	var status, code, country string
	var freight int64
	var delivery, created *time.Time
	err := pool.QueryRow(ctx, `
		SELECT status, tracking_code, country_code, freight_minor, estimated_delivery, created_at
		FROM shipments WHERE order_id = $1`, scheduled.OrderID()).Scan(&status, &code, &country, &freight, &delivery, &created)
	if err != nil {
		t.Fatal(err)
	}
	if status != "SCHEDULED" || code != scheduled.TrackingCode() || country != "BR" || freight != 1300 ||
		delivery == nil || !delivery.Equal(now.AddDate(0, 0, 3)) || !created.Equal(now) {
		t.Errorf("scheduled shipment = %s %s %s %d %v %v", status, code, country, freight, delivery, created)
	}
	var reason string
	var noCode, noDelivery bool
	err = pool.QueryRow(ctx, `
		SELECT status, reason, tracking_code IS NULL, estimated_delivery IS NULL FROM shipments WHERE order_id = $1`,
		failed.OrderID()).Scan(&status, &reason, &noCode, &noDelivery)
	if err != nil {
		t.Fatal(err)
	}
	if status != "FAILED" || reason != "carrier does not deliver to AQ" || !noCode || !noDelivery {
		t.Errorf("failed shipment = %s %q, no code %v, no delivery %v", status, reason, noCode, noDelivery)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM shipments").Scan(&n); err != nil || n != 3 {
		t.Errorf("%d shipments (%v), want 3", n, err)
	}
}
