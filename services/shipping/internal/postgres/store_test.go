package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
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

// beginStore returns the units of work of the store on pool, as the runner makes them, its
// reads ahead of orderIDs sent first when prepare is set.
func beginStore(pool *pgxpool.Pool, prepare bool) storetest.Begin {
	return func(t *testing.T, orderIDs ...string) (eventhandler.Store, func(bool)) {
		var batch *unitofwork.Batch
		if prepare {
			batch = &unitofwork.Batch{OrderIDs: orderIDs}
		}
		return unitofworktest.Begin(t, pool, postgres.NewStore, batch)
	}
}
