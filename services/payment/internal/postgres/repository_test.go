package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

const queue = "payment.test"

func setup(t *testing.T) (*postgres.Repository, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t, "paymentrepo", postgres.Migrations, inbox.Migrations, outbox.Migrations)
	return postgres.NewRepository(pool), pool
}

func newPayment(t *testing.T, orderID, method string) postgres.NewPayment {
	t.Helper()
	g, err := payment.NewGateway(1_000_000, 0, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	p, err := payment.Charge(g, uuid.NewString(), orderID, method, 500)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	return postgres.NewPayment{EventID: uuid.NewString(), Payment: p, Announce: outbox.Event{
		ID: id, OrderID: orderID, RoutingKey: broker.PaymentApproved,
		Payload: &paymentv1.PaymentApproved{EventId: id, OrderId: orderID},
	}}
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateOnePaymentPerOrder(t *testing.T) {
	t.Parallel()
	repo, pool := setup(t)
	ctx := context.Background()
	orderID := uuid.NewString()
	first, second := newPayment(t, orderID, payment.MethodCreditCard), newPayment(t, orderID, payment.MethodDeclinedCard)

	stored, err := repo.Create(ctx, queue, []postgres.NewPayment{first})
	if err != nil || len(stored) != 1 {
		t.Fatalf("Create = %d stored, %v; want 1", len(stored), err)
	}
	// A second event for the order, and the first one redelivered, store nothing.
	stored, err = repo.Create(ctx, queue, []postgres.NewPayment{second, first})
	if err != nil || len(stored) != 0 {
		t.Fatalf("Create again = %d stored, %v; want none", len(stored), err)
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'APPROVED'", orderID); n != 1 {
		t.Errorf("%d approved payments, want 1", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM outbox WHERE correlation_id = $1", orderID); n != 1 {
		t.Errorf("%d outbox rows, want 1", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM idempotency_keys WHERE queue = $1", queue); n != 2 {
		t.Errorf("%d inbox rows, want 2", n)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	repo, pool := setup(t)
	ctx := context.Background()
	a, b := newPayment(t, uuid.NewString(), payment.MethodCreditCard), newPayment(t, uuid.NewString(), payment.MethodDebitCard)
	if _, err := repo.Create(ctx, queue, []postgres.NewPayment{a, b}); err != nil {
		t.Fatal(err)
	}
	unknown := uuid.NewString()
	batch := []postgres.OrderEvent{
		{EventID: uuid.NewString(), OrderID: b.Payment.OrderID()},
		{EventID: uuid.NewString(), OrderID: unknown},
	}
	seen := map[string]bool{}
	fn := func(ev postgres.OrderEvent, p *payment.Payment) ([]outbox.Event, error) {
		seen[ev.OrderID] = p != nil
		if p == nil {
			return nil, nil
		}
		if _, err := p.Reverse("test"); err != nil {
			return nil, err
		}
		id := uuid.NewString()
		return []outbox.Event{{ID: id, OrderID: ev.OrderID, RoutingKey: broker.PaymentReversed,
			Payload: &paymentv1.PaymentReversed{EventId: id, OrderId: ev.OrderID}}}, nil
	}
	if err := repo.Update(ctx, queue, batch, fn); err != nil {
		t.Fatal(err)
	}
	if !seen[b.Payment.OrderID()] || seen[unknown] {
		t.Errorf("fn saw %v, want the payment of %s and none for %s", seen, b.Payment.OrderID(), unknown)
	}
	// Redelivered: fn is not called again.
	clear(seen)
	if err := repo.Update(ctx, queue, batch, fn); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Errorf("fn called for a duplicate batch: %v", seen)
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE status = 'REVERSED' AND reason = 'test' AND order_id = $1",
		b.Payment.OrderID()); n != 1 {
		t.Error("payment b not reversed")
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE status = 'APPROVED' AND order_id = $1", a.Payment.OrderID()); n != 1 {
		t.Error("payment a changed")
	}
	if n := count(t, pool, "SELECT count(*) FROM outbox WHERE routing_key = $1", broker.PaymentReversed); n != 1 {
		t.Errorf("%d payment.reversed in the outbox, want 1", n)
	}
}
