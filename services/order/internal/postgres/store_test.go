package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
	"github.com/ordersaga/ordersaga/services/order/internal/storetest"
)

// The PostgreSQL store keeps the contract of the rules' Store (internal/storetest), both when
// the runner read the unit of work's orders ahead (Prepare) and when it did not.
func TestStoreContract(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	impl := func(prepare bool) storetest.Impl {
		return storetest.Impl{
			Begin: beginStore(repo, pool, prepare),
			Place: func(t *testing.T) string { return create(t, repo, uuid.NewString(), "").ID() },
			History: func(t *testing.T, id string) []order.Status {
				t.Helper()
				o, err := repo.Get(context.Background(), id)
				if err != nil {
					t.Fatalf("Get(%s): %v", id, err)
				}
				var statuses []order.Status
				for _, h := range o.History() {
					statuses = append(statuses, h.Status)
				}
				return statuses
			},
		}
	}
	t.Run("prepared", func(t *testing.T) { storetest.Run(t, impl(true)) })
	t.Run("read on demand", func(t *testing.T) { storetest.Run(t, impl(false)) })
}

// beginStore returns the units of work of repo's store on pool, as the runner makes them, its
// reads ahead of orderIDs sent first when prepare is set.
func beginStore(repo *postgres.Repository, pool *pgxpool.Pool, prepare bool) storetest.Begin {
	return func(t *testing.T, orderIDs ...string) (eventhandler.Store, func(bool)) {
		var batch *unitofwork.Batch
		if prepare {
			batch = &unitofwork.Batch{OrderIDs: orderIDs}
		}
		return unitofworktest.Begin(t, pool, repo.Store, batch)
	}
}

// begin opens a transaction and repo's store on it, prepared for orderIDs when prepare is set.
func begin(t *testing.T, repo *postgres.Repository, pool *pgxpool.Pool, prepare bool, orderIDs ...string) (pgx.Tx, *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	s := repo.Store(tx)
	if prepare {
		b := &pgx.Batch{}
		s.Prepare(b, unitofwork.Batch{OrderIDs: orderIDs})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			tx.Rollback(ctx)
			t.Fatalf("prepare: %v", err)
		}
	}
	return tx, s
}
