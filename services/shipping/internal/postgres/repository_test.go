package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
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

// add commits shipments, added by a unit of work of their own.
func add(t *testing.T, pool *pgxpool.Pool, shipments ...*shipping.Shipment) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := postgres.NewStore(tx)
	for _, sh := range shipments {
		s.Add(sh)
	}
	return unitofworktest.Commit(ctx, tx, s)
}

// A shipment's columns: what it does not have (a failed one's tracking code and delivery
// estimate, a scheduled one's reason) is NULL, not blank.
func TestStoredColumns(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "shippingrepo", postgres.Migrations...)
	ctx := context.Background()
	scheduled, failed := newShipment(t, uuid.NewString(), "BR"), newShipment(t, uuid.NewString(), "AQ")
	if err := add(t, pool, scheduled, failed); err != nil {
		t.Fatal(err)
	}

	var status, code, country string
	var freight int64
	var delivery, created *time.Time
	var noReason bool
	err := pool.QueryRow(ctx, `
		SELECT status, tracking_code, country_code, freight_minor, estimated_delivery, created_at, reason IS NULL
		FROM shipments WHERE order_id = $1`, scheduled.OrderID()).Scan(&status, &code, &country, &freight, &delivery, &created, &noReason)
	if err != nil {
		t.Fatal(err)
	}
	if status != "SCHEDULED" || code != scheduled.TrackingCode() || country != "BR" || freight != 1300 ||
		delivery == nil || !delivery.Equal(now.AddDate(0, 0, 3)) || !created.Equal(now) || !noReason {
		t.Errorf("scheduled shipment = %s %s %s %d %v %v, no reason %v", status, code, country, freight, delivery, created, noReason)
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
}

// The runner's order locks keep a second shipment of an order from ever being added: should
// one be, the unit of work fails rather than keep two, or drop one silently.
func TestSecondShipmentOfAnOrderFailsTheUnitOfWork(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "shippingrepo", postgres.Migrations...)
	orderID := uuid.NewString()
	if err := add(t, pool, newShipment(t, orderID, "BR")); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if err := add(t, pool, newShipment(t, orderID, "PT")); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("a second shipment of an order: %v, want a unique violation", err)
	}
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM shipments WHERE order_id = $1", orderID).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d shipments of one order (%v), want 1", n, err)
	}
}
