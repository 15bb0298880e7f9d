package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testenv.Postgres(t, "paymentrepo", postgres.Migrations...)
}

func newPayment(t *testing.T, orderID, method string) *payment.Payment {
	t.Helper()
	g, err := payment.NewGateway(1_000_000, 0, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	p, err := payment.Charge(g, uuid.NewString(), orderID, method, 500)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// add commits payments, added by a unit of work of their own.
func add(t *testing.T, pool *pgxpool.Pool, payments ...*payment.Payment) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := postgres.NewStore(tx)
	for _, p := range payments {
		s.Add(p)
	}
	return unitofworktest.Commit(ctx, tx, s)
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A payment without a reason stores none (NULL), not a blank one.
func TestStoredColumns(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	approved, declined := newPayment(t, uuid.NewString(), payment.MethodCreditCard), newPayment(t, uuid.NewString(), payment.MethodDeclinedCard)
	if err := add(t, pool, approved, declined); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE id = $1 AND order_id = $2 AND method = 'credit_card' AND amount_minor = 500 AND status = 'APPROVED' AND reason IS NULL",
		approved.ID(), approved.OrderID()); n != 1 {
		t.Error("approved payment not stored as such, without a reason")
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'DECLINED' AND reason = 'card declined'", declined.OrderID()); n != 1 {
		t.Error("declined payment not stored with its reason")
	}
}

// The runner's order locks keep a second payment of an order from ever being added: should one
// be, the unit of work fails rather than keep two, or drop one silently.
func TestSecondPaymentOfAnOrderFailsTheUnitOfWork(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	orderID := uuid.NewString()
	first := newPayment(t, orderID, payment.MethodCreditCard)
	if err := add(t, pool, first); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if err := add(t, pool, newPayment(t, orderID, payment.MethodDebitCard)); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("a second payment of an order: %v, want a unique violation", err)
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1", orderID); n != 1 {
		t.Errorf("%d payments of one order, want 1", n)
	}
}

// Prepare locks the payments of the batch's orders until the transaction ends, and only those.
func TestPrepareLocksThePaymentsOfTheBatch(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	a, b := newPayment(t, uuid.NewString(), payment.MethodCreditCard), newPayment(t, uuid.NewString(), payment.MethodDebitCard)
	if err := add(t, pool, a, b); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	s := postgres.NewStore(tx)
	batch := &pgx.Batch{}
	s.Prepare(batch, unitofwork.Batch{OrderIDs: []string{b.OrderID(), uuid.NewString()}})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	if !locked(t, pool, b.ID()) {
		t.Error("the payment of the batch's order is not locked")
	}
	if locked(t, pool, a.ID()) {
		t.Error("the payment of another order is locked")
	}
	// What Prepare read is what the rules get, without a statement of their own.
	if p, err := s.Get(ctx, b.OrderID()); err != nil || p == nil || p.ID() != b.ID() {
		t.Errorf("Payment of the prepared order = %v, %v", p, err)
	}
}

// locked reports whether another transaction holds a lock on payment id.
func locked(t *testing.T, pool *pgxpool.Pool, id string) bool {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(other pgx.Tx) error {
		_, err := other.Exec(ctx, "SELECT 1 FROM payments WHERE id = $1 FOR UPDATE NOWAIT", id)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}
