package eventhandler_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// deadlocks returns how many deadlocks PostgreSQL has broken in the database of pool.
func deadlocks(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(),
		`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		t.Fatalf("read deadlocks: %v", err)
	}
	return n
}

// settledDeadlocks returns the deadlock count once every other connection to the database has
// ended: a backend reports its statistics when idle for a second or when it exits, so the
// pool's connections are closed first.
func settledDeadlocks(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	pool.Reset()
	testenv.Eventually(t, 10*time.Second, "the pool's old connections to end", func() bool {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		return n == 0
	})
	// A backend leaves pg_stat_activity just before it reports its last statistics.
	var n int64
	for range 10 {
		n = max(n, deadlocks(t, pool))
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// TestReserveAndReleaseNeverDeadlock runs reserve, cancel and shipping-failed batches at once on
// shared products, each cancel batch naming both orders being reserved at that moment and orders
// reserved earlier: every path takes its locks in one order, so PostgreSQL breaks no deadlock and
// every batch commits the first time. Each worker is a replica of its own: a replica runs one
// unit of work at a time.
func TestReserveAndReleaseNeverDeadlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	products := []string{e.product(t, 1_000_000), e.product(t, 1_000_000), e.product(t, 1_000_000)}
	before := deadlocks(t, e.pool)

	const rounds, workers, perBatch = 12, 4, 6
	replicas := make([]*env, workers)
	for w := range replicas {
		replicas[w] = newEnvOn(t, e.pool, outbox.NewRelay(e.pool, nil, testenv.Logger(t)))
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	run := func(h func(context.Context, []amqp.Delivery) error, ds []amqp.Delivery) {
		wg.Go(func() {
			if err := h(context.Background(), ds); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	var cancelledOrders []string
	for range rounds {
		// Orders reserved before the round, each holding every product.
		var earlier, failing []amqp.Delivery
		for range workers * perBatch {
			ev := approved(line(products[0], 1), line(products[1], 1), line(products[2], 1))
			earlier = append(earlier, delivery(t, ev))
			failing = append(failing, delivery(t, &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: ev.OrderId, OccurTime: timestamppb.Now()}))
		}
		if err := e.approved(context.Background(), earlier); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		for w := range workers {
			var reserve, cancel []amqp.Delivery
			for i := range perBatch {
				// Products in an order that differs from batch to batch.
				ev := approved(line(products[(w+i)%3], 1), line(products[(w+i+1)%3], 1))
				reserve = append(reserve, delivery(t, ev))
				cancel = append(cancel, delivery(t, orderCancelled(ev.OrderId)))
				cancelledOrders = append(cancelledOrders, ev.OrderId)
			}
			mine := earlier[w*perBatch : (w+1)*perBatch]
			for _, d := range mine[:perBatch/2] {
				cancel = append(cancel, delivery(t, orderCancelled(d.CorrelationId)))
				cancelledOrders = append(cancelledOrders, d.CorrelationId)
			}
			r := replicas[w]
			run(r.cancelled, cancel)
			run(r.approved, reserve)
			run(r.released, failing[w*perBatch+perBatch/2:(w+1)*perBatch])
		}
		wg.Wait()
	}
	for _, err := range errs {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
			t.Errorf("batch deadlocked: %v", err)
		} else {
			t.Errorf("batch failed: %v", err)
		}
	}
	if after := settledDeadlocks(t, e.pool); after != before {
		t.Errorf("pg_stat_database.deadlocks went from %d to %d", before, after)
	}

	// Whatever the interleaving, nothing a cancellation touched stays held, and stock adds up.
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE status = 'RESERVED' AND order_id = ANY($1::text[]::uuid[])`, cancelledOrders); n != 0 {
		t.Errorf("%d cancelled orders still hold stock", n)
	}
	for _, p := range products {
		_, reserved := e.stock(t, p)
		held := e.count(t, `SELECT coalesce(sum(i.quantity), 0) FROM reservation_items i
			JOIN reservations r ON r.id = i.reservation_id WHERE r.status = 'RESERVED' AND i.product_id = $1`, p)
		if reserved != int64(held) {
			t.Errorf("product %s: %d reserved, reservations hold %d", p, reserved, held)
		}
	}
}

// waiters waits until n connections to the database of pool wait for a lock.
func waiters(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "connections waiting for a lock", func() bool {
		var got int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&got); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		return got >= n
	})
}

// TestCancellationDuringAReservationBatch holds a cancellation of order X between its tombstone
// and its commit, while a batch [X, Y] competes for the last unit of a product: the batch must
// not read the stock before it knows whether X is cancelled. If it did, X would take the unit
// and give it back when it met the tombstone, and Y would be refused with the unit on the shelf.
func TestCancellationDuringAReservationBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	last, other := e.product(t, 1), e.product(t, 10)
	// X sorts before Z, so that the cancellation takes X's tombstone before it waits for Z.
	ids := []string{uuid.NewString(), uuid.NewString()}
	slices.Sort(ids)
	x, z := approved(line(last, 1)), approved(line(other, 1))
	x.OrderId, z.OrderId = ids[0], ids[1]
	y := approved(line(last, 1))
	handle(t, e.approved, z)

	// Another connection locks Z's reservation: the cancellation of X and Z stops there, its
	// tombstone for X written and not yet committed.
	ctx := context.Background()
	hold, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE`, z.OrderId); err != nil {
		t.Fatal(err)
	}
	cancelDone := make(chan error, 1)
	go func() {
		cancelDone <- e.cancelled(ctx, deliveries(t, orderCancelled(x.OrderId), orderCancelled(z.OrderId)))
	}()
	waiters(t, e.pool, 1)
	// On another replica: this one's next unit of work would wait for the cancellation's.
	replica := newEnvOn(t, e.pool, outbox.NewRelay(e.pool, nil, testenv.Logger(t)))
	reserveDone := make(chan error, 1)
	go func() { reserveDone <- replica.approved(ctx, deliveries(t, x, y)) }()
	waiters(t, e.pool, 2)
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, done := range []chan error{cancelDone, reserveDone} {
		if err := <-done; err != nil {
			t.Fatalf("handler: %v", err)
		}
	}

	if _, reserved := e.stock(t, last); reserved != 1 {
		t.Errorf("last unit: reserved = %d, want 1 (Y's)", reserved)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'RESERVED'`, y.OrderId); n != 1 {
		t.Errorf("Y has %d RESERVED reservations, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'CANCELLED'`, x.OrderId); n != 1 {
		t.Errorf("X has %d tombstones, want 1", n)
	}
	for _, row := range e.outbox(t) {
		if f, ok := row.payload.(*inventoryv1.InventoryFailed); ok {
			t.Errorf("inventory.failed for order %s (Y is %s): %s", f.OrderId, y.OrderId, f.Reason)
		}
		if r, ok := row.payload.(*inventoryv1.InventoryReserved); ok && r.OrderId == x.OrderId {
			t.Errorf("inventory.reserved for the cancelled order X")
		}
	}
	if got := len(e.outbox(t)); got != 3 {
		t.Errorf("outbox has %d rows, want 3 (Z reserved, Z released, Y reserved)", got)
	}
}
