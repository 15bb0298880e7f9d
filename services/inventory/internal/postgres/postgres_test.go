package postgres_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

type env struct {
	pool *pgxpool.Pool
	repo *postgres.Repository
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := testenv.Postgres(t, "inventory_store", postgres.Migrations...)
	return &env{pool: pool, repo: postgres.NewRepository(pool)}
}

// begin opens a transaction that is rolled back at the end of the test unless committed.
func (e *env) begin(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := e.pool.Begin(context.Background())
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

func commit(t *testing.T, tx pgx.Tx) {
	t.Helper()
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func (e *env) product(t *testing.T, total int64) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := e.repo.SetStock(context.Background(), id, total); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	return id
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// status returns the status of an order's reservation, or "" when it has none.
func (e *env) status(t *testing.T, orderID string) string {
	t.Helper()
	var s string
	err := e.pool.QueryRow(context.Background(), `SELECT status FROM reservations WHERE order_id = $1`, orderID).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatalf("select reservation: %v", err)
	}
	return s
}

// reserve commits a RESERVED reservation of items for a new order and returns it.
func (e *env) reserve(t *testing.T, items ...inventory.Item) inventory.Reservation {
	t.Helper()
	return e.reserveFor(t, uuid.NewString(), items...)
}

// reserveFor commits a RESERVED reservation of items for order and returns it.
func (e *env) reserveFor(t *testing.T, order string, items ...inventory.Item) inventory.Reservation {
	t.Helper()
	ctx := context.Background()
	tx := e.begin(t)
	s := postgres.Bind(tx)
	claimed, err := s.ClaimReservations(ctx, []string{order})
	if err != nil {
		t.Fatalf("ClaimReservations: %v", err)
	}
	res := inventory.Reservation{ID: claimed[order], OrderID: order, Items: items}
	if err := s.SaveReservations(ctx, []inventory.Reservation{res}, nil); err != nil {
		t.Fatalf("SaveReservations: %v", err)
	}
	commit(t, tx)
	return res
}

// sortedIDs returns n new ids in ascending order.
func sortedIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	slices.Sort(ids)
	return ids
}

func TestProductAndSetStock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := uuid.NewString()

	if _, err := e.repo.Product(ctx, id); !errors.Is(err, inventory.ErrUnknownProduct) {
		t.Errorf("Product of an unknown id: %v, want ErrUnknownProduct", err)
	}
	// A product refused at creation is not created.
	if _, err := e.repo.SetStock(ctx, id, -1); !errors.Is(err, inventory.ErrInvalidQuantity) {
		t.Errorf("SetStock(-1): %v, want ErrInvalidQuantity", err)
	}
	if _, err := e.repo.Product(ctx, id); !errors.Is(err, inventory.ErrUnknownProduct) {
		t.Errorf("a refused product was created: %v", err)
	}
	if p, err := e.repo.SetStock(ctx, id, 5); err != nil || p.Total() != 5 || p.Reserved() != 0 {
		t.Fatalf("SetStock(5) = %v, %v", p, err)
	}
	if p, err := e.repo.SetStock(ctx, id, 7); err != nil || p.Total() != 7 {
		t.Fatalf("SetStock(7) = %v, %v", p, err)
	}
	p, err := e.repo.Product(ctx, id)
	if err != nil || p.ID() != id || p.Total() != 7 || p.Reserved() != 0 {
		t.Errorf("Product = %+v, %v; want total 7", p, err)
	}
	if name, err := e.repo.Product(ctx, "00000000-0000-0000-0000-000000000001"); err != nil || name.Name() != "Demo keyboard" {
		t.Errorf("demo product: %v, %v", name, err)
	}
}

func TestSetStockRefusesATotalBelowReserved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := e.product(t, 5)
	tx := e.begin(t)
	if err := postgres.Bind(tx).SaveStock(ctx, []*inventory.Product{inventory.Load(id, "", 5, 3)}); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)

	if _, err := e.repo.SetStock(ctx, id, 2); !errors.Is(err, inventory.ErrBelowReserved) {
		t.Errorf("SetStock(2) with 3 reserved: %v, want ErrBelowReserved", err)
	}
	if p, err := e.repo.SetStock(ctx, id, 3); err != nil || p.Total() != 3 || p.Reserved() != 3 {
		t.Errorf("SetStock(3) with 3 reserved = %v, %v; want total 3", p, err)
	}
	if p, _ := e.repo.Product(ctx, id); p.Total() != 3 || p.Reserved() != 3 {
		t.Errorf("stored total, reserved = %d, %d, want 3, 3", p.Total(), p.Reserved())
	}
}

func TestLockProductsAndSaveStock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.product(t, 10), e.product(t, 4)
	unknown := uuid.NewString()

	tx := e.begin(t)
	s := postgres.Bind(tx)
	products, err := s.LockProducts(ctx, []string{b, unknown, a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(products) != 2 || products[a].Total() != 10 || products[b].Total() != 4 {
		t.Fatalf("LockProducts = %v, want a and b only", products)
	}
	if err := inventory.Reserve(products, []inventory.Item{{ProductID: a, Quantity: 3}, {ProductID: b, Quantity: 4}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveStock(ctx, []*inventory.Product{products[a], products[b]}); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)
	for id, want := range map[string]int64{a: 3, b: 4} {
		if p, _ := e.repo.Product(ctx, id); p.Reserved() != want {
			t.Errorf("product %s reserved = %d, want %d", id, p.Reserved(), want)
		}
	}

	// The table refuses more reserved than there is, whatever a caller asks.
	tx = e.begin(t)
	if err := postgres.Bind(tx).SaveStock(ctx, []*inventory.Product{inventory.Load(b, "", 4, 5)}); err == nil {
		t.Error("SaveStock stored 5 reserved of 4")
	}
}

func TestClaimAndSaveReservations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.product(t, 10)
	earlier := e.reserve(t, inventory.Item{ProductID: p, Quantity: 1})
	tombstoned := uuid.NewString()
	tx := e.begin(t)
	if _, err := postgres.Bind(tx).InsertTombstones(ctx, []string{tombstoned}); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)

	kept, dropped := uuid.NewString(), uuid.NewString()
	tx = e.begin(t)
	s := postgres.Bind(tx)
	claimed, err := s.ClaimReservations(ctx, []string{kept, earlier.OrderID, dropped, tombstoned, kept})
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 2 || claimed[kept] == "" || claimed[dropped] == "" || claimed[kept] == claimed[dropped] {
		t.Fatalf("ClaimReservations = %v, want new reservations for %s and %s only", claimed, kept, dropped)
	}
	res := inventory.Reservation{ID: claimed[kept], OrderID: kept, Items: []inventory.Item{{ProductID: p, Quantity: 2}}}
	if err := s.SaveReservations(ctx, []inventory.Reservation{res}, []string{claimed[dropped]}); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)

	if got := e.status(t, kept); got != postgres.StatusReserved {
		t.Errorf("kept order: %q, want RESERVED", got)
	}
	if got := e.status(t, dropped); got != "" {
		t.Errorf("dropped order: %q, want no reservation", got)
	}
	if got := e.status(t, tombstoned); got != postgres.StatusCancelled {
		t.Errorf("tombstoned order: %q, want CANCELLED", got)
	}
	if n := e.count(t, `SELECT count(*) FROM reservation_items WHERE reservation_id = $1 AND product_id = $2 AND quantity = 2`, res.ID, p); n != 1 {
		t.Errorf("kept reservation has %d matching items, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations`); n != 3 {
		t.Errorf("%d reservations, want 3", n)
	}
}

func TestTombstonesLockAndRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.product(t, 10), e.product(t, 10)
	held := e.reserve(t, inventory.Item{ProductID: b, Quantity: 1}, inventory.Item{ProductID: a, Quantity: 2})
	other := e.reserve(t, inventory.Item{ProductID: a, Quantity: 1})
	fresh := uuid.NewString()

	tx := e.begin(t)
	s := postgres.Bind(tx)
	tombstoned, err := s.InsertTombstones(ctx, []string{held.OrderID, fresh, fresh})
	if err != nil {
		t.Fatal(err)
	}
	if len(tombstoned) != 1 || !tombstoned[fresh] {
		t.Errorf("InsertTombstones = %v, want %s only", tombstoned, fresh)
	}
	// The reservation it did not replace is locked by now.
	if !locked(t, e.pool, held.OrderID) || locked(t, e.pool, other.OrderID) {
		t.Error("InsertTombstones did not lock exactly the existing reservation it was given")
	}
	got, err := s.LockReserved(ctx, []string{fresh, other.OrderID, held.OrderID})
	if err != nil {
		t.Fatal(err)
	}
	// RESERVED ones only, in order id order, each with its items in product id order.
	want := []inventory.Reservation{held, other}
	slices.SortFunc(want, func(x, y inventory.Reservation) int { return cmp.Compare(x.OrderID, y.OrderID) })
	for i := range want {
		want[i].Items = slices.Clone(want[i].Items)
		slices.SortFunc(want[i].Items, func(x, y inventory.Item) int { return cmp.Compare(x.ProductID, y.ProductID) })
	}
	if !equal(got, want) {
		t.Errorf("LockReserved = %v, want %v", got, want)
	}
	if err := s.MarkReleased(ctx, []string{held.ID}); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)

	for order, status := range map[string]string{held.OrderID: postgres.StatusReleased, other.OrderID: postgres.StatusReserved, fresh: postgres.StatusCancelled} {
		if got := e.status(t, order); got != status {
			t.Errorf("order %s: %q, want %q", order, got, status)
		}
	}
	tx = e.begin(t)
	if got, err := postgres.Bind(tx).LockReserved(ctx, []string{held.OrderID, fresh}); err != nil || len(got) != 0 {
		t.Errorf("LockReserved of a released and a cancelled order = %v, %v; want none", got, err)
	}
}

func equal(a, b []inventory.Reservation) bool {
	return slices.EqualFunc(a, b, func(x, y inventory.Reservation) bool {
		return x.ID == y.ID && x.OrderID == y.OrderID && slices.Equal(x.Items, y.Items)
	})
}

// locked reports whether another transaction holds a lock on the reservation of orderID.
func locked(t *testing.T, pool *pgxpool.Pool, orderID string) bool {
	t.Helper()
	return tryLock(t, pool, `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE NOWAIT`, orderID)
}

// tryLock runs query in a transaction of its own that gives up at once on a lock and is rolled
// back, and reports whether it met a lock.
func tryLock(t *testing.T, pool *pgxpool.Pool, query string, args ...any) bool {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '100ms'`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, query, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
		return true
	}
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return false
}

// waitForLockWaiter waits until a connection to the database waits for a lock.
func waitForLockWaiter(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "a connection waiting for a lock", func() bool {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		return n > 0
	})
}

// TestLocksAreTakenInIDOrder gives each locking method its ids in descending order while
// another transaction holds the middle one: the method must stop there holding the lowest and
// not the highest, whatever order it was given.
func TestLocksAreTakenInIDOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup creates three rows with ascending ids and returns those ids.
		setup func(t *testing.T, e *env) []string
		// hold takes the lock on id from another transaction.
		hold string
		// lock takes the locks of ids through the store.
		lock func(ctx context.Context, s *postgres.Store, ids []string) error
		// isLocked reports whether id is locked by another transaction.
		isLocked string
	}{
		{
			name: "LockProducts",
			setup: func(t *testing.T, e *env) []string {
				ids := sortedIDs(3)
				for _, id := range ids {
					if _, err := e.repo.SetStock(context.Background(), id, 1); err != nil {
						t.Fatal(err)
					}
				}
				return ids
			},
			hold: `SELECT 1 FROM products WHERE id = $1 FOR UPDATE`,
			lock: func(ctx context.Context, s *postgres.Store, ids []string) error {
				_, err := s.LockProducts(ctx, ids)
				return err
			},
			isLocked: `SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT`,
		},
		{
			name:  "ClaimReservations",
			setup: func(*testing.T, *env) []string { return sortedIDs(3) },
			hold:  `INSERT INTO reservations (id, order_id, status) VALUES (gen_random_uuid(), $1, 'CANCELLED')`,
			lock: func(ctx context.Context, s *postgres.Store, ids []string) error {
				_, err := s.ClaimReservations(ctx, ids)
				return err
			},
			isLocked: `INSERT INTO reservations (id, order_id, status) VALUES (gen_random_uuid(), $1, 'CANCELLED') ON CONFLICT DO NOTHING`,
		},
		{
			name:  "InsertTombstones",
			setup: func(*testing.T, *env) []string { return sortedIDs(3) },
			hold:  `INSERT INTO reservations (id, order_id, status) VALUES (gen_random_uuid(), $1, 'CANCELLED')`,
			lock: func(ctx context.Context, s *postgres.Store, ids []string) error {
				_, err := s.InsertTombstones(ctx, ids)
				return err
			},
			isLocked: `INSERT INTO reservations (id, order_id, status) VALUES (gen_random_uuid(), $1, 'CANCELLED') ON CONFLICT DO NOTHING`,
		},
		{
			name: "InsertTombstones on reservations",
			setup: func(t *testing.T, e *env) []string {
				return reservedOrders(t, e)
			},
			hold: `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE`,
			lock: func(ctx context.Context, s *postgres.Store, ids []string) error {
				_, err := s.InsertTombstones(ctx, ids)
				return err
			},
			isLocked: `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE NOWAIT`,
		},
		{
			name: "LockReserved",
			setup: func(t *testing.T, e *env) []string {
				return reservedOrders(t, e)
			},
			hold: `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE`,
			lock: func(ctx context.Context, s *postgres.Store, ids []string) error {
				_, err := s.LockReserved(ctx, ids)
				return err
			},
			isLocked: `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE NOWAIT`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			ids := tt.setup(t, e)
			low, middle, high := ids[0], ids[1], ids[2]

			holder := e.begin(t)
			if _, err := holder.Exec(ctx, tt.hold, middle); err != nil {
				t.Fatalf("hold %s: %v", middle, err)
			}
			tx := e.begin(t)
			done := make(chan error, 1)
			go func() { done <- tt.lock(ctx, postgres.Bind(tx), []string{high, middle, low}) }()
			waitForLockWaiter(t, e.pool)
			if !tryLock(t, e.pool, tt.isLocked, low) {
				t.Error("the lowest id is not locked while the method waits for the middle one")
			}
			if tryLock(t, e.pool, tt.isLocked, high) {
				t.Error("the highest id is locked before the middle one")
			}
			if err := holder.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !tryLock(t, e.pool, tt.isLocked, high) {
				t.Error("the highest id is not locked once the method returned")
			}
		})
	}
}

// reservedOrders commits three RESERVED reservations and returns their orders, ascending. The
// reservations are made highest order first, so that their own ids, which grow with time,
// sort the other way round.
func reservedOrders(t *testing.T, e *env) []string {
	t.Helper()
	p := e.product(t, 10)
	orders := sortedIDs(3)
	for _, order := range slices.Backward(orders) {
		e.reserveFor(t, order, inventory.Item{ProductID: p, Quantity: 1})
	}
	return orders
}
