package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
	"github.com/ordersaga/ordersaga/services/inventory/internal/storetest"
)

// The PostgreSQL store keeps the contract of the rules' Store (internal/storetest), both when
// the runner read the unit of work's reservations and products ahead (Prepare) and when it did
// not.
func TestStoreContract(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "inventorystore", postgres.Migrations...)
	repo := postgres.NewRepository(pool)
	setStock := func(t *testing.T, productID string, total int64) {
		t.Helper()
		if _, err := repo.SetStock(context.Background(), productID, total); err != nil {
			t.Fatalf("SetStock: %v", err)
		}
	}
	t.Run("prepared", func(t *testing.T) { storetest.Run(t, beginStore(pool, true), setStock) })
	t.Run("read on demand", func(t *testing.T) { storetest.Run(t, beginStore(pool, false), setStock) })
}

// beginStore returns the units of work of the store on pool, as the runner makes them, its
// reads ahead sent first when prepare is set.
func beginStore(pool *pgxpool.Pool, prepare bool) storetest.Begin {
	return func(t *testing.T, orderIDs, productIDs []string) (eventhandler.Store, func(bool)) {
		var batch *unitofwork.Batch
		if prepare {
			b := batchOf(orderIDs, productIDs)
			batch = &b
		}
		return unitofworktest.Begin(t, pool, postgres.NewStore, batch)
	}
}

// batchOf is a batch of orderIDs whose payment.approved names productIDs (none when productIDs
// is empty): one event per order, the first naming them all.
func batchOf(orderIDs, productIDs []string) unitofwork.Batch {
	batch := unitofwork.Batch{OrderIDs: orderIDs}
	if len(productIDs) > 0 && len(orderIDs) > 0 {
		ev := &paymentv1.PaymentApproved{OrderId: orderIDs[0]}
		for _, id := range productIDs {
			ev.Items = append(ev.Items, &orderv1.OrderLine{ProductId: id, Quantity: 1})
		}
		batch.Events = []rules.Message{ev}
	}
	return batch
}

// prepareStore sends what s reads ahead for batchOf(orderIDs, productIDs).
func prepareStore(ctx context.Context, tx pgx.Tx, s *postgres.Store, orderIDs, productIDs []string) error {
	b := &pgx.Batch{}
	s.Prepare(b, batchOf(orderIDs, productIDs))
	return tx.SendBatch(ctx, b).Close()
}
