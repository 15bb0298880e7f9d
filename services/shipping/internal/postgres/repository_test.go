package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

const queue = "shipping.test"

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newShipment(t *testing.T, orderID, country string) postgres.NewShipment {
	t.Helper()
	c, err := shipping.NewCarrier(1000, 0, shipping.Env{Now: func() time.Time { return now }, Random: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Schedule(uuid.NewString(), orderID, country, 2)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	return postgres.NewShipment{EventID: uuid.NewString(), Shipment: s, Announce: outbox.Event{
		ID: id, OrderID: orderID, RoutingKey: broker.ShippingScheduled,
		Payload: &shippingv1.ShippingScheduled{EventId: id, OrderId: orderID},
	}}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "shippingrepo", postgres.Migrations, inbox.Migrations, outbox.Migrations)
	repo := postgres.NewRepository(pool)
	ctx := context.Background()
	scheduled, failed := newShipment(t, uuid.NewString(), "BR"), newShipment(t, uuid.NewString(), "AQ")

	stored, err := repo.Create(ctx, queue, []postgres.NewShipment{scheduled, failed})
	if err != nil || len(stored) != 2 {
		t.Fatalf("Create = %d stored, %v; want 2", len(stored), err)
	}
	// Redelivered, and a second event for an order already shipped: nothing more.
	again := newShipment(t, scheduled.Shipment.OrderID(), "PT")
	stored, err = repo.Create(ctx, queue, []postgres.NewShipment{scheduled, again})
	if err != nil || len(stored) != 0 {
		t.Fatalf("Create again = %d stored, %v; want none", len(stored), err)
	}

	var status, code, country string
	var freight int64
	var delivery, created *time.Time
	err = pool.QueryRow(ctx, `
		SELECT status, tracking_code, country_code, freight_minor, estimated_delivery, created_at
		FROM shipments WHERE order_id = $1`, scheduled.Shipment.OrderID()).Scan(&status, &code, &country, &freight, &delivery, &created)
	if err != nil {
		t.Fatal(err)
	}
	if status != "SCHEDULED" || code != scheduled.Shipment.TrackingCode() || country != "BR" || freight != 1300 ||
		delivery == nil || !delivery.Equal(now.AddDate(0, 0, 3)) || !created.Equal(now) {
		t.Errorf("scheduled shipment = %s %s %s %d %v %v", status, code, country, freight, delivery, created)
	}
	var reason string
	var noCode, noDelivery bool
	err = pool.QueryRow(ctx, `
		SELECT status, reason, tracking_code IS NULL, estimated_delivery IS NULL FROM shipments WHERE order_id = $1`,
		failed.Shipment.OrderID()).Scan(&status, &reason, &noCode, &noDelivery)
	if err != nil {
		t.Fatal(err)
	}
	if status != "FAILED" || reason != "carrier does not deliver to AQ" || !noCode || !noDelivery {
		t.Errorf("failed shipment = %s %q, no code %v, no delivery %v", status, reason, noCode, noDelivery)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil || n != 2 {
		t.Errorf("%d outbox rows (%v), want 2", n, err)
	}
}
