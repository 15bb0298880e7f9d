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
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testenv.Postgres(t, "paymentrepo", postgres.Migrations...)
}

// inTx runs fn with a store bound to a transaction, and commits.
func inTx(t *testing.T, pool *pgxpool.Pool, fn func(*postgres.Store) error) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(postgres.Bind(tx)) })
	if err != nil {
		t.Fatal(err)
	}
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

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInsertOnePaymentPerOrder(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	orderID := uuid.NewString()
	first, second := newPayment(t, orderID, payment.MethodCreditCard), newPayment(t, orderID, payment.MethodDeclinedCard)

	inTx(t, pool, func(s *postgres.Store) error {
		stored, err := s.Insert(ctx, []*payment.Payment{first})
		if err != nil || len(stored) != 1 || !stored[first.ID()] {
			t.Fatalf("Insert = %v, %v; want %s stored", stored, err, first.ID())
		}
		return nil
	})
	// A second payment for the order, and the first one again, store nothing.
	inTx(t, pool, func(s *postgres.Store) error {
		stored, err := s.Insert(ctx, []*payment.Payment{second, first})
		if err != nil || len(stored) != 0 {
			t.Fatalf("Insert again = %v, %v; want none stored", stored, err)
		}
		return nil
	})
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1", orderID); n != 1 {
		t.Errorf("%d payments, want 1", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'APPROVED' AND id = $2", orderID, first.ID()); n != 1 {
		t.Errorf("the first, approved payment is not the one stored")
	}
}

func TestInsertTwoPaymentsOfOneOrderInOneBatch(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	orderID, other := uuid.NewString(), uuid.NewString()
	a, b, c := newPayment(t, orderID, payment.MethodCreditCard), newPayment(t, orderID, payment.MethodDebitCard), newPayment(t, other, payment.MethodDeclinedCard)
	inTx(t, pool, func(s *postgres.Store) error {
		stored, err := s.Insert(ctx, []*payment.Payment{a, c, b})
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != 2 || !stored[c.ID()] || stored[a.ID()] == stored[b.ID()] {
			t.Errorf("stored %v, want %s and one of %s, %s", stored, c.ID(), a.ID(), b.ID())
		}
		return nil
	})
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1", orderID); n != 1 {
		t.Errorf("%d payments of one order, want 1", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'DECLINED' AND reason = 'card declined'", other); n != 1 {
		t.Errorf("declined payment not stored with its reason")
	}
}

func TestLockAndSave(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	a, b := newPayment(t, uuid.NewString(), payment.MethodCreditCard), newPayment(t, uuid.NewString(), payment.MethodDebitCard)
	inTx(t, pool, func(s *postgres.Store) error {
		_, err := s.Insert(ctx, []*payment.Payment{a, b})
		return err
	})
	unknown := uuid.NewString()
	inTx(t, pool, func(s *postgres.Store) error {
		got, err := s.Lock(ctx, []string{b.OrderID(), unknown, b.OrderID()})
		if err != nil {
			t.Fatal(err)
		}
		p := got[b.OrderID()]
		if len(got) != 1 || p == nil {
			t.Fatalf("Lock = %v, want only the payment of %s", got, b.OrderID())
		}
		if p.ID() != b.ID() || p.Method() != payment.MethodDebitCard || p.AmountMinor() != 500 || p.Status() != payment.StatusApproved {
			t.Errorf("loaded %+v, want %+v", p, b)
		}
		// Locked: another transaction cannot take the row until this one ends.
		err = pgx.BeginFunc(ctx, pool, func(other pgx.Tx) error {
			_, err := other.Exec(ctx, "SELECT 1 FROM payments WHERE id = $1 FOR UPDATE NOWAIT", b.ID())
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
			t.Errorf("the locked payment could be locked again: %v", err)
		}
		if _, err := p.Reverse("test"); err != nil {
			t.Fatal(err)
		}
		return s.Save(ctx, []*payment.Payment{p})
	})
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE status = 'REVERSED' AND reason = 'test' AND order_id = $1",
		b.OrderID()); n != 1 {
		t.Error("payment b not reversed")
	}
	if n := count(t, pool, "SELECT count(*) FROM payments WHERE status = 'APPROVED' AND reason IS NULL AND order_id = $1", a.OrderID()); n != 1 {
		t.Error("payment a changed")
	}
	inTx(t, pool, func(s *postgres.Store) error {
		if err := s.Save(ctx, nil); err != nil {
			t.Errorf("Save of nothing: %v", err)
		}
		got, err := s.Lock(ctx, []string{unknown})
		if err != nil || len(got) != 0 {
			t.Errorf("Lock of an order without payment = %v, %v", got, err)
		}
		return nil
	})
}
