package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/storetest"
)

// The PostgreSQL store keeps the contract of the rules' Store (internal/storetest), both when
// the runner read the unit of work's orders ahead (Prepare) and when it did not.
func TestStoreContract(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "shippingstore", postgres.Migrations...)
	t.Run("prepared", func(t *testing.T) { storetest.Run(t, beginStore(pool, true)) })
	t.Run("read on demand", func(t *testing.T) { storetest.Run(t, beginStore(pool, false)) })
}

// beginStore returns the units of work of the store on pool, as the runner makes them: a
// transaction, the store's reads ahead of orderIDs sent with its first round trip when prepare
// is set, and its writes flushed into the round trip that commits.
func beginStore(pool *pgxpool.Pool, prepare bool) storetest.Begin {
	return func(t *testing.T, orderIDs ...string) (eventhandler.Store, func(bool)) {
		t.Helper()
		ctx := context.Background()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		s := postgres.NewStore(tx)
		if prepare {
			b := &pgx.Batch{}
			s.Prepare(b, unitofwork.Batch{OrderIDs: orderIDs})
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				tx.Rollback(ctx)
				t.Fatalf("prepare: %v", err)
			}
		}
		return s, func(commit bool) {
			t.Helper()
			if !commit {
				if err := tx.Rollback(ctx); err != nil {
					t.Errorf("rollback: %v", err)
				}
				return
			}
			if err := end(ctx, tx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// end flushes the writes of s in one batch, commits and tells s it committed; it rolls back on
// failure.
func end(ctx context.Context, tx pgx.Tx, s *postgres.Store) error {
	defer tx.Rollback(ctx)
	b := &pgx.Batch{}
	if err := s.Flush(b); err != nil {
		return err
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.Committed()
	return nil
}
