package postgres_test

import (
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
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
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

// reserve commits a RESERVED reservation of items for a new order, made through the store as
// the rules make it, and returns it.
func (e *env) reserve(t *testing.T, items ...inventory.Item) *inventory.Reservation {
	t.Helper()
	ctx := context.Background()
	tx := e.begin(t)
	s := postgres.NewStore(tx)
	products, err := s.Products(ctx, inventory.ProductIDs(items))
	if err != nil {
		t.Fatal(err)
	}
	if err := inventory.Reserve(products, items); err != nil {
		t.Fatal(err)
	}
	r := &inventory.Reservation{ID: uuid.NewString(), OrderID: uuid.NewString(), Status: inventory.Held, Items: inventory.Merge(items)}
	s.AddReservation(r)
	s.SaveStock(products)
	if err := unitofworktest.Commit(ctx, tx, s); err != nil {
		t.Fatal(err)
	}
	return r
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
	e.reserve(t, inventory.Item{ProductID: id, Quantity: 3})

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

// The table refuses more reserved than there is, whatever the store is given: the unit of
// work fails, and nothing of it is kept.
func TestSaveStockCannotReserveMoreThanTheTotal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	b := e.product(t, 4)
	tx := e.begin(t)
	s := postgres.NewStore(tx)
	s.AddReservation(&inventory.Reservation{ID: uuid.NewString(), OrderID: uuid.NewString(), Status: inventory.Held,
		Items: []inventory.Item{{ProductID: b, Quantity: 5}}})
	s.SaveStock(map[string]*inventory.Product{b: inventory.Load(b, "", 4, 5)})
	if err := unitofworktest.Commit(ctx, tx, s); err == nil {
		t.Error("the store committed 5 reserved of 4")
	}
	if p, _ := e.repo.Product(ctx, b); p.Reserved() != 0 {
		t.Errorf("reserved %d after the failed unit of work, want 0", p.Reserved())
	}
	if n := e.count(t, `SELECT count(*) FROM reservations`); n != 0 {
		t.Errorf("%d reservations after the failed unit of work, want 0", n)
	}
}

// Prepare locks, in the round trip that begins the transaction, the reservations of the
// batch's orders, the products its payment.approved events name and those the batch's held
// reservations hold: nothing else. A product named that does not exist stays absent.
func TestPrepareLocksWhatTheBatchTouches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	named, heldByBatch, heldElsewhere, releasedByBatch, untouched := e.product(t, 10), e.product(t, 10), e.product(t, 10), e.product(t, 10), e.product(t, 10)
	missing := uuid.NewString()
	held := e.reserve(t, inventory.Item{ProductID: heldByBatch, Quantity: 1})
	other := e.reserve(t, inventory.Item{ProductID: heldElsewhere, Quantity: 1})
	released := e.reserve(t, inventory.Item{ProductID: releasedByBatch, Quantity: 1})
	// released's reservation is given back by a unit of work of its own first.
	release := e.begin(t)
	rs := postgres.NewStore(release)
	res, err := rs.Reservation(ctx, released.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	products, err := rs.Products(ctx, inventory.ProductIDs(res.Items))
	if err != nil {
		t.Fatal(err)
	}
	if err := inventory.Release(products, res.Items); err != nil {
		t.Fatal(err)
	}
	res.Status = inventory.Released
	rs.SaveReservation(res)
	rs.SaveStock(products)
	if err := unitofworktest.Commit(ctx, release, rs); err != nil {
		t.Fatal(err)
	}

	tx := e.begin(t)
	s := postgres.NewStore(tx)
	fresh := uuid.NewString()
	if err := prepareStore(ctx, tx, s, []string{fresh, held.OrderID, released.OrderID}, []string{named, missing}); err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]string{"named by a payment.approved": named, "held by a reservation of the batch": heldByBatch} {
		if !tryLock(t, e.pool, `SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT`, id) {
			t.Errorf("the product %s is not locked", name)
		}
	}
	for name, id := range map[string]string{"held by another order": heldElsewhere, "of a released reservation": releasedByBatch, "untouched": untouched} {
		if tryLock(t, e.pool, `SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT`, id) {
			t.Errorf("the product %s is locked", name)
		}
	}
	for name, order := range map[string]string{"held": held.OrderID, "released": released.OrderID} {
		if !tryLock(t, e.pool, `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE NOWAIT`, order) {
			t.Errorf("the %s reservation of the batch is not locked", name)
		}
	}
	if tryLock(t, e.pool, `SELECT 1 FROM reservations WHERE order_id = $1 FOR UPDATE NOWAIT`, other.OrderID) {
		t.Error("another order's reservation is locked")
	}
	products, err = s.Products(ctx, []string{missing, named, heldByBatch})
	if err != nil {
		t.Fatal(err)
	}
	if len(products) != 2 || products[named] == nil || products[heldByBatch] == nil || products[heldByBatch].Reserved() != 1 {
		t.Errorf("Products after Prepare = %v, want the named and the held product, not the missing one", products)
	}
	if got, err := s.Reservation(ctx, held.OrderID); err != nil || got == nil || got.ID != held.ID || got.Status != inventory.Held {
		t.Errorf("Reservation of the held order = %v, %v", got, err)
	}
	if got, err := s.Reservation(ctx, fresh); err != nil || got != nil {
		t.Errorf("Reservation of an order without one = %v, %v", got, err)
	}
}

// Products locks the products it has to read in id order, whatever order it is given: while
// another transaction holds the middle one, it holds the lowest and not the highest.
func TestProductsLockInIDOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ids := sortedIDs(3)
	for _, id := range ids {
		if _, err := e.repo.SetStock(ctx, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	low, middle, high := ids[0], ids[1], ids[2]
	const isLocked = `SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT`

	holder := e.begin(t)
	if _, err := holder.Exec(ctx, `SELECT 1 FROM products WHERE id = $1 FOR UPDATE`, middle); err != nil {
		t.Fatalf("hold %s: %v", middle, err)
	}
	tx := e.begin(t)
	done := make(chan error, 1)
	go func() {
		_, err := postgres.NewStore(tx).Products(ctx, []string{high, middle, low})
		done <- err
	}()
	waitForLockWaiter(t, e.pool)
	if !tryLock(t, e.pool, isLocked, low) {
		t.Error("the lowest id is not locked while Products waits for the middle one")
	}
	if tryLock(t, e.pool, isLocked, high) {
		t.Error("the highest id is locked before the middle one")
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Products: %v", err)
	}
	if !tryLock(t, e.pool, isLocked, high) {
		t.Error("the highest id is not locked once Products returned")
	}
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
