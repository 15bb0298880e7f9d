package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork/unitofworktest"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/outgoing"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

func newRepo(t *testing.T) (*postgres.Repository, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t, "order", postgres.Migrations...)
	return postgres.NewRepository(pool), pool
}

func params(customer, requestID string) order.Params {
	return order.Params{
		CustomerID:    customer,
		PaymentMethod: "credit_card",
		Items: []order.Item{
			{ProductID: "00000000-0000-0000-0000-000000000001", Quantity: 2, UnitPrice: 4990},
			{ProductID: "00000000-0000-0000-0000-000000000002", Quantity: 1, UnitPrice: 1000},
		},
		ShippingAddress: &order.Address{Recipient: "Ana Lúcia", Line1: "Rua 1", City: "Recife", PostalCode: "50000-000", CountryCode: "BR"},
		RequestID:       requestID,
	}
}

func newOrder(t *testing.T, customer, requestID string) *order.Order {
	t.Helper()
	o, err := order.New(params(customer, requestID), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// store creates o with its order.created event, as CreateOrder does.
func store(ctx context.Context, repo *postgres.Repository, o *order.Order) (*order.Order, bool, error) {
	return repo.Create(ctx, o, outgoing.Created(o))
}

func create(t *testing.T, repo *postgres.Repository, customer, requestID string) *order.Order {
	t.Helper()
	o, created, err := store(context.Background(), repo, newOrder(t, customer, requestID))
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	return o
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	want := create(t, repo, uuid.NewString(), "")

	got, err := repo.Get(ctx, want.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != want.ID() || got.CustomerID() != want.CustomerID() || got.Status() != order.StatusPending ||
		got.Total() != 10980 || got.CountryCode() != "BR" || got.ShippingAddress().City != "Recife" ||
		!got.CreatedAt().Equal(want.CreatedAt()) || !got.UpdatedAt().Equal(want.UpdatedAt()) || got.RequestID() != "" {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if len(got.Items()) != 2 || got.Items()[0] != want.Items()[0] || got.Items()[1] != want.Items()[1] {
		t.Errorf("items %+v", got.Items())
	}
	if h := got.History(); len(h) != 1 || h[0].Status != order.StatusPending || !h[0].At.Equal(want.CreatedAt()) {
		t.Errorf("history %+v", h)
	}

	// The order.created event is in the outbox, in the same commit.
	var body []byte
	var key, msgID string
	if err := pool.QueryRow(ctx, `SELECT routing_key, event_id::text, body FROM outbox`).Scan(&key, &msgID, &body); err != nil {
		t.Fatal(err)
	}
	var ev orderv1.OrderCreated
	if err := proto.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	if key != "order.created" || ev.GetEventId() != msgID || ev.GetOrderId() != want.ID() || ev.GetTotalMinor() != 10980 ||
		ev.GetCountryCode() != "BR" || len(ev.GetItems()) != 2 || ev.GetItems()[0].GetUnitPriceMinor() != 4990 ||
		ev.GetPaymentMethod() != "credit_card" || ev.GetCustomerId() != want.CustomerID() {
		t.Errorf("event %s %v", key, &ev)
	}

	if _, err := repo.Get(ctx, uuid.NewString()); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := repo.Get(ctx, "not-a-uuid"); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("malformed id: %v", err)
	}
}

func TestCreateIdempotent(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	customer := uuid.NewString()
	first := create(t, repo, customer, "req-42")

	again, created, err := store(ctx, repo, newOrder(t, customer, "req-42"))
	if err != nil || created {
		t.Fatalf("repeat: created=%v err=%v", created, err)
	}
	if again.ID() != first.ID() || len(again.History()) != 1 {
		t.Errorf("repeat returned %s, want %s", again.ID(), first.ID())
	}
	if n := count(t, pool, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("%d orders", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM order_items`); n != 2 {
		t.Errorf("%d items", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d events", n)
	}
}

func TestCreateConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	customer := uuid.NewString()
	const n = 8
	ids := make([]string, n)
	createdN := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o, created, err := store(context.Background(), repo, newOrder(t, customer, "same-key"))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[i] = o.ID()
			if created {
				createdN++
			}
		})
	}
	wg.Wait()
	if createdN != 1 {
		t.Errorf("%d requests created an order, want 1", createdN)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Errorf("ids differ: %v", ids)
			break
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("%d orders", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d events", n)
	}
}

// Replicas (repositories of their own) storing one customer's key at once: one order, every
// caller gets it. When two inserts pass the per-customer key's check together, the loser hits
// the global key on request_id instead (migration 00002), and must still be answered with the
// order, not refused as another customer's key.
func TestCreateDuplicatesAcrossReplicas(t *testing.T) {
	t.Parallel()
	_, pool := newRepo(t)
	replicas := []*postgres.Repository{postgres.NewRepository(pool), postgres.NewRepository(pool), postgres.NewRepository(pool)}
	customer := uuid.NewString()
	const rounds, perReplica = 10, 3
	for round := range rounds {
		key := fmt.Sprintf("replicas-%d", round)
		var (
			mu       sync.Mutex
			ids      = map[string]int{}
			createdN int
			wg       sync.WaitGroup
		)
		for _, repo := range replicas {
			for range perReplica {
				wg.Go(func() {
					o, created, err := store(context.Background(), repo, newOrder(t, customer, key))
					if err != nil {
						t.Errorf("%s: %v", key, err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					ids[o.ID()]++
					if created {
						createdN++
					}
				})
			}
		}
		wg.Wait()
		if createdN != 1 || len(ids) != 1 {
			t.Errorf("%s: %d created, order ids %v; want one order", key, createdN, ids)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM orders`); n != rounds {
		t.Errorf("%d orders, want %d", n, rounds)
	}
}

// A key belongs to the customer that sent it, but while the global key on request_id stays
// (migration 00002: release 1 runs beside this release), another customer's identical key is
// refused with ErrRequestIDTaken and stores nothing; the key keeps answering its own customer.
func TestCreateKeyOfAnotherCustomer(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	alice := create(t, repo, uuid.NewString(), "checkout-1")
	got, created, err := store(ctx, repo, newOrder(t, uuid.NewString(), "checkout-1"))
	if !errors.Is(err, order.ErrRequestIDTaken) || created || got != nil {
		t.Errorf("another customer's key: created=%v order=%v err=%v, want ErrRequestIDTaken", created, got, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	if again, created, err := store(ctx, repo, newOrder(t, alice.CustomerID(), "checkout-1")); err != nil || created || again.ID() != alice.ID() {
		t.Errorf("the key's own customer again: created=%v err=%v", created, err)
	}
}

// Customers racing for one key, in one batch or in several: one order, every other customer
// refused with ErrRequestIDTaken, the orders without that key stored.
func TestCreateKeyRacedByCustomers(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	const n = 12
	var (
		mu              sync.Mutex
		taken, createdN int
		wg              sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			key := "raced"
			if i%4 == 0 {
				key = fmt.Sprintf("own-%d", i) // an order of the same batch that must not suffer
			}
			_, created, err := store(context.Background(), repo, newOrder(t, uuid.NewString(), key))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, order.ErrRequestIDTaken):
				taken++
			case err != nil:
				t.Error(err)
			case created:
				createdN++
			}
		})
	}
	wg.Wait()
	if createdN != n/4+1 || taken != n-n/4-1 {
		t.Errorf("%d created and %d refused, want %d and %d", createdN, taken, n/4+1, n-n/4-1)
	}
	if got := count(t, pool, `SELECT count(*) FROM orders`); got != n/4+1 {
		t.Errorf("%d orders, want %d", got, n/4+1)
	}
}

// Release 1 runs on the migrated database during the rolling update: its insert (ON CONFLICT
// (request_id), no fingerprint) still works, and this release answers a repeat of a request
// that release 1 stored, comparing its request with the fingerprint computed from the order.
func TestCreateBesideRelease1(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	insertV1 := func(o *order.Order) int64 {
		t.Helper()
		// Release 1's statement (6ae25de, services/order/internal/postgres), reduced to the
		// columns and conflict target that matter here.
		tag, err := pool.Exec(ctx, `
			WITH o AS (
				INSERT INTO orders (id, customer_id, payment_method, status, total_minor, shipping_address,
					country_code, request_id, created_at, updated_at)
				VALUES ($1, $2, $3, 'PENDING', $4, $5, NULLIF($6, ''), NULLIF($7, ''), now(), now())
				ON CONFLICT (request_id) DO NOTHING
				RETURNING id
			)
			INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_minor)
			SELECT o.id, i.line, i.product_id, i.quantity, i.price
			FROM unnest($8::int[], $9::text[]::uuid[], $10::int[], $11::bigint[]) AS i(line, product_id, quantity, price), o`,
			o.ID(), o.CustomerID(), o.PaymentMethod(), int64(o.Total()), o.ShippingAddress(), o.CountryCode(), o.RequestID(),
			[]int32{1, 2}, []string{o.Items()[0].ProductID, o.Items()[1].ProductID},
			[]int32{o.Items()[0].Quantity, o.Items()[1].Quantity}, []int64{int64(o.Items()[0].UnitPrice), int64(o.Items()[1].UnitPrice)})
		if err != nil {
			t.Fatalf("release 1's insert: %v", err)
		}
		return tag.RowsAffected()
	}
	customer := uuid.NewString()
	v1 := newOrder(t, customer, "v1-key")
	if n := insertV1(v1); n != 2 {
		t.Fatalf("release 1 stored %d items, want 2", n)
	}
	if n := insertV1(newOrder(t, customer, "v1-key")); n != 0 {
		t.Errorf("release 1's repeat stored %d items, want none", n)
	}
	// A key this release stored answers release 1's repeat by its conflict target too.
	v2 := create(t, repo, customer, "v2-key")
	if n := insertV1(newOrder(t, customer, "v2-key")); n != 0 {
		t.Errorf("release 1's repeat of %s stored %d items, want none", v2.ID(), n)
	}

	again, created, err := store(ctx, repo, newOrder(t, customer, "v1-key"))
	if err != nil || created || again.ID() != v1.ID() {
		t.Errorf("repeat of release 1's order: created=%v err=%v", created, err)
	}
	p := params(customer, "v1-key")
	p.Items[0].Quantity = 5
	changed, err := order.New(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, created, err := store(ctx, repo, changed); !errors.Is(err, order.ErrRequestIDReused) || created || got != nil {
		t.Errorf("release 1's key, other request: created=%v err=%v, want ErrRequestIDReused", created, err)
	}
	if got, created, err := store(ctx, repo, newOrder(t, uuid.NewString(), "v1-key")); !errors.Is(err, order.ErrRequestIDTaken) || created || got != nil {
		t.Errorf("release 1's key, another customer: created=%v err=%v, want ErrRequestIDTaken", created, err)
	}
}

// The same key with a different request is refused and stores nothing.
func TestCreateKeyReusedForAnotherRequest(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	customer := uuid.NewString()
	first := create(t, repo, customer, "req-7")

	for name, edit := range map[string]func(*order.Params){
		"quantity": func(p *order.Params) { p.Items[0].Quantity = 3 },
		"method":   func(p *order.Params) { p.PaymentMethod = "debit_card" },
		"address":  func(p *order.Params) { p.ShippingAddress = &order.Address{CountryCode: "PT"} },
		"no items": func(p *order.Params) { p.Items = p.Items[:1] },
	} {
		p := params(customer, "req-7")
		edit(&p)
		o, err := order.New(p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, created, err := store(ctx, repo, o)
		if !errors.Is(err, order.ErrRequestIDReused) || created || got != nil {
			t.Errorf("%s: created=%v order=%v err=%v, want ErrRequestIDReused", name, created, got, err)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("%d orders", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d events", n)
	}
	if again, created, err := store(ctx, repo, newOrder(t, customer, "req-7")); err != nil || created || again.ID() != first.ID() {
		t.Errorf("same request again: created=%v err=%v", created, err)
	}
}

// Concurrent creates with one key, some with another request: one order, every same request gets
// it, every different request is refused.
func TestCreateConcurrentConflicts(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	customer := uuid.NewString()
	const n = 12
	var (
		mu       sync.Mutex
		ids      = map[string]int{}
		refused  int
		createdN int
		wg       sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			p := params(customer, "contended")
			other := i%3 == 0
			if other {
				p.Items[0].Quantity = int32(10 + i)
			}
			o, err := order.New(p, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			got, created, err := store(context.Background(), repo, o)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, order.ErrRequestIDReused):
				refused++
			case err != nil:
				t.Error(err)
			default:
				ids[got.ID()]++
				if created {
					createdN++
				}
			}
		})
	}
	wg.Wait()
	if createdN != 1 || len(ids) != 1 {
		t.Errorf("created %d, order ids %v; want one order", createdN, ids)
	}
	for _, c := range ids {
		if c+refused != n {
			t.Errorf("%d got the order and %d were refused, of %d", c, refused, n)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("%d orders", n)
	}
}

// Orders stored before the fingerprint existed get one computed by the migration, equal to the
// one the service computes, so that their keys keep working.
func TestMigrationFingerprintsExistingOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t, "order_migrate")
	p := migrateTo(t, pool, 1)
	var err error
	// As version 1 stored them: one with an address, one without, one without a key.
	legacy := []*order.Order{newOrder(t, uuid.NewString(), "old-1"), nil, newOrder(t, uuid.NewString(), "")}
	pNoAddr := params(uuid.NewString(), "old-2")
	pNoAddr.ShippingAddress = nil
	if legacy[1], err = order.New(pNoAddr, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, o := range legacy {
		var addr any
		if a := o.ShippingAddress(); a != nil {
			addr = a
		}
		_, err := pool.Exec(ctx, `INSERT INTO orders (id, customer_id, payment_method, status, total_minor,
			shipping_address, country_code, request_id, created_at, updated_at)
			VALUES ($1, $2, $3, 'PENDING', $4, $5, NULLIF($6, ''), NULLIF($7, ''), now(), now())`,
			o.ID(), o.CustomerID(), o.PaymentMethod(), int64(o.Total()), addr, o.CountryCode(), o.RequestID())
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range o.Items() {
			if _, err := pool.Exec(ctx, `INSERT INTO order_items VALUES ($1, $2, $3, $4, $5)`,
				o.ID(), i+1, it.ProductID, it.Quantity, int64(it.UnitPrice)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for _, o := range legacy {
		var got []byte
		if err := pool.QueryRow(ctx, `SELECT request_fingerprint FROM orders WHERE id = $1`, o.ID()).Scan(&got); err != nil {
			t.Fatal(err)
		}
		want := o.RequestFingerprint()
		if o.RequestID() == "" {
			want = nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("order %s (key %q): migrated fingerprint %x, want %x", o.ID(), o.RequestID(), got, want)
		}
	}
	// The old keys still answer with their orders after the migration.
	for _, m := range postgres.Migrations[1:] {
		if err := database.Migrate(ctx, pool, m); err != nil {
			t.Fatal(err)
		}
	}
	repo := postgres.NewRepository(pool)
	again, created, err := store(ctx, repo, newOrder(t, legacy[0].CustomerID(), "old-1"))
	if err != nil || created || again.ID() != legacy[0].ID() {
		t.Errorf("legacy key: created=%v err=%v", created, err)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	alice, bob := uuid.NewString(), uuid.NewString()
	var aliceIDs []string
	for i := range 25 {
		aliceIDs = append(aliceIDs, create(t, repo, alice, fmt.Sprintf("a-%d", i)).ID())
	}
	for range 5 {
		create(t, repo, bob, "")
	}

	// Alice's orders, newest first, in pages of 10.
	var got []string
	token := ""
	for page := 0; ; page++ {
		orders, next, err := repo.List(ctx, order.ListQuery{CustomerID: alice, PageSize: 10, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if page < 2 && (len(orders) != 10 || next == "") || page == 2 && (len(orders) != 5 || next != "") {
			t.Fatalf("page %d: %d orders, next %q", page, len(orders), next)
		}
		for _, o := range orders {
			got = append(got, o.ID())
			if len(o.Items()) != 2 || len(o.History()) != 1 {
				t.Errorf("order %s: items %v history %v", o.ID(), o.Items(), o.History())
			}
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(got) != 25 {
		t.Fatalf("%d orders, want 25", len(got))
	}
	for i, id := range got {
		if want := aliceIDs[len(aliceIDs)-1-i]; id != want {
			t.Fatalf("order %d = %s, want %s (newest first)", i, id, want)
		}
	}

	all, next, err := repo.List(ctx, order.ListQuery{PageSize: 100})
	if err != nil || len(all) != 30 || next != "" {
		t.Fatalf("all: %d orders, next %q, err %v", len(all), next, err)
	}

	// Filter by status.
	apply(t, repo, pool, order.Event{ID: uuid.NewString(), OrderID: aliceIDs[3], Kind: order.PaymentApproved})
	approved, _, err := repo.List(ctx, order.ListQuery{Status: order.StatusPaymentApproved, PageSize: 10})
	if err != nil || len(approved) != 1 || approved[0].ID() != aliceIDs[3] {
		t.Fatalf("approved: %v %v", approved, err)
	}
	pending, _, err := repo.List(ctx, order.ListQuery{CustomerID: bob, Status: order.StatusPending, PageSize: 10})
	if err != nil || len(pending) != 5 {
		t.Fatalf("bob pending: %d %v", len(pending), err)
	}

	var fe *order.FieldError
	if _, _, err := repo.List(ctx, order.ListQuery{PageSize: 10, PageToken: "garbage!"}); !errors.As(err, &fe) || fe.Field != "page_token" {
		t.Errorf("bad token: %v", err)
	}
	if _, _, err := repo.List(ctx, order.ListQuery{PageSize: 10, CustomerID: "x"}); !errors.As(err, &fe) || fe.Field != "customer_id" {
		t.Errorf("bad customer: %v", err)
	}
}

func event(id string, kind order.EventKind) order.Event {
	return order.Event{ID: uuid.NewString(), OrderID: id, Kind: kind}
}

// apply moves orders by events through the Store in one unit of work, as order-service's rule
// does, its orders read ahead (Prepare), and returns the changes recorded. Once committed, the
// store announces them (Committed), as the runner makes it.
func apply(t *testing.T, repo *postgres.Repository, pool *pgxpool.Pool, events ...order.Event) []order.Change {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.OrderID
	}
	slices.Sort(ids)
	tx, s := begin(t, repo, pool, true, slices.Compact(ids)...)
	var changes []order.Change
	now := time.Now()
	for _, e := range events {
		o, err := s.Order(ctx, e.OrderID)
		if err != nil || o == nil {
			tx.Rollback(ctx)
			t.Fatalf("order %s: %v, %v", e.OrderID, o, err)
		}
		change, changed, err := o.Apply(e, now)
		if err != nil {
			tx.Rollback(ctx)
			t.Fatal(err)
		}
		if changed {
			c := order.Change{Event: e, StatusChange: change, Update: o.Update(change)}
			s.Record(o, c)
			changes = append(changes, c)
		}
	}
	if err := unitofworktest.Commit(ctx, tx, s); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return changes
}

func TestStoreOutOfOrder(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	o := create(t, repo, uuid.NewString(), "")

	scheduled := event(o.ID(), order.ShippingScheduled)
	scheduled.TrackingCode = "TRK-ABCD1234"
	changes := apply(t, repo, pool, scheduled)
	if len(changes) != 1 || changes[0].Status != order.StatusConfirmed {
		t.Fatalf("scheduled: %v", changes)
	}
	// The late events change nothing.
	for _, kind := range []order.EventKind{order.PaymentApproved, order.InventoryReserved, order.PaymentReversed} {
		if changes := apply(t, repo, pool, event(o.ID(), kind)); len(changes) != 0 {
			t.Fatalf("%s: %v", kind, changes)
		}
	}
	got, err := repo.Get(ctx, o.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Status() != order.StatusConfirmed || got.TrackingCode() != "TRK-ABCD1234" || len(got.History()) != 2 ||
		!got.UpdatedAt().After(got.CreatedAt()) {
		t.Errorf("order %s tracking %q history %+v", got.Status(), got.TrackingCode(), got.History())
	}
}

func TestStoreBatch(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	happy := create(t, repo, uuid.NewString(), "")
	failing := create(t, repo, uuid.NewString(), "")

	approved := event(happy.ID(), order.PaymentApproved)
	invFailed := event(failing.ID(), order.InventoryFailed)
	invFailed.Reason = "product 00000000-0000-0000-0000-000000000002: insufficient stock"
	reversed := event(failing.ID(), order.PaymentReversed)
	reversed.Reason = "inventory failed"
	batch := []order.Event{
		approved,
		event(failing.ID(), order.PaymentApproved),
		approved, // a repeat within the batch
		event(happy.ID(), order.InventoryReserved),
		invFailed,
		reversed,
	}
	changes := apply(t, repo, pool, batch...)
	if len(changes) != 5 {
		t.Errorf("%d changes, want 5: %+v", len(changes), changes)
	}
	got, _ := repo.Get(ctx, happy.ID())
	if got.Status() != order.StatusInventoryReserved || len(got.History()) != 3 ||
		got.History()[1].Status != order.StatusPaymentApproved || got.History()[2].Status != order.StatusInventoryReserved {
		t.Errorf("happy: %s %+v", got.Status(), got.History())
	}
	if got.Version() != 3 {
		t.Errorf("happy: version %d, want 3", got.Version())
	}
	got, _ = repo.Get(ctx, failing.ID())
	if got.Status() != order.StatusCancelled || got.FailureReason() != invFailed.Reason || len(got.History()) != 4 {
		t.Errorf("failing: %s %q %+v", got.Status(), got.FailureReason(), got.History())
	}

	// The same events again change nothing: every order is past them.
	if changes := apply(t, repo, pool, batch...); len(changes) != 0 {
		t.Fatalf("again: %v", changes)
	}
	got, _ = repo.Get(ctx, happy.ID())
	if len(got.History()) != 3 {
		t.Errorf("applying again wrote history: %+v", got.History())
	}
}

// Prepare locks the batch's orders until the transaction ends; an id without an order reads nil.
func TestPrepareLocksTheOrdersOfTheBatch(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	o, other := create(t, repo, uuid.NewString(), ""), create(t, repo, uuid.NewString(), "")
	unknown := uuid.NewString()
	tx, s := begin(t, repo, pool, true, o.ID(), unknown)
	defer tx.Rollback(ctx)
	// Locked: another transaction cannot take the row until this one ends.
	_, err := pool.Exec(ctx, "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE NOWAIT", o.ID())
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Errorf("the locked order could be locked again: %v", err)
	}
	if _, err := pool.Exec(ctx, "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE NOWAIT", other.ID()); err != nil {
		t.Errorf("an order outside the batch is locked: %v", err)
	}
	if got, err := s.Order(ctx, o.ID()); err != nil || got == nil || got.Status() != order.StatusPending || got.Version() != 1 {
		t.Errorf("Order(%s) = %v, %v; want it PENDING at version 1", o.ID(), got, err)
	}
	if got, err := s.Order(ctx, unknown); err != nil || got != nil {
		t.Errorf("Order of an id without an order = %v, %v; want nil", got, err)
	}
}

// Committed announces the changes a unit of work made once it committed, and a unit of work
// rolled back announces nothing.
func TestStatusChangesAnnouncedOnceCommitted(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	var announced []order.Update
	repo.AfterStatusCommit(func(u []order.Update) { announced = append(announced, u...) })
	o := create(t, repo, uuid.NewString(), "")

	tx, s := begin(t, repo, pool, false)
	got, err := s.Order(ctx, o.ID())
	if err != nil {
		t.Fatal(err)
	}
	e := event(o.ID(), order.PaymentApproved)
	change, _, err := got.Apply(e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.Record(got, order.Change{Event: e, StatusChange: change, Update: got.Update(change)})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if len(announced) != 0 {
		t.Fatalf("announced before a commit: %+v", announced)
	}
	apply(t, repo, pool, event(o.ID(), order.PaymentApproved))
	if len(announced) != 1 || announced[0].OrderID != o.ID() || announced[0].Version != 2 || announced[0].Change.Status != order.StatusPaymentApproved {
		t.Errorf("announced %+v, want the change to PAYMENT_APPROVED at version 2", announced)
	}
}

func TestCountPending(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	a := create(t, repo, uuid.NewString(), "")
	create(t, repo, uuid.NewString(), "")
	c := create(t, repo, uuid.NewString(), "")
	apply(t, repo, pool, event(a.ID(), order.PaymentFailed))
	apply(t, repo, pool, event(c.ID(), order.PaymentApproved))
	counts, err := repo.CountPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Terminal orders are not counted: their outcomes are ordersaga_order_completion_seconds.
	if counts[order.StatusPending] != 1 || counts[order.StatusPaymentApproved] != 1 || len(counts) != 2 {
		t.Errorf("counts %v", counts)
	}
}

// open_orders holds exactly the orders not terminal, by the domain's list of terminal statuses,
// whoever writes them (triggers, so also a previous release), and the migration that creates it
// fills it from the orders already stored.
func TestOpenOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t, "order_open")
	p := migrateTo(t, pool, 5)
	for _, m := range postgres.Migrations[1:] {
		if err := database.Migrate(ctx, pool, m); err != nil {
			t.Fatal(err)
		}
	}
	repo := postgres.NewRepository(pool)
	// One order in each status before the migration, one after it; each moved straight from
	// PENDING by SQL, as any writer may.
	before, after := map[string]order.Status{}, map[string]order.Status{}
	place := func(into map[string]order.Status) {
		for _, st := range order.Statuses {
			o := create(t, repo, uuid.NewString(), "")
			if st != order.StatusPending {
				if _, err := pool.Exec(ctx, `UPDATE orders SET status = $2 WHERE id = $1`, o.ID(), string(st)); err != nil {
					t.Fatal(err)
				}
			}
			into[o.ID()] = st
		}
	}
	place(before)
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	place(after)
	for name, orders := range map[string]map[string]order.Status{"before the migration": before, "after it": after} {
		for id, st := range orders {
			if open := count(t, pool, `SELECT count(*) FROM open_orders WHERE order_id = $1`, id) == 1; open == st.Terminal() {
				t.Errorf("order %s %s: in open_orders = %v", st, name, open)
			}
		}
	}
	counts, err := repo.CountPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range order.Statuses {
		if want := map[bool]int64{false: 2}[st.Terminal()]; counts[st] != want {
			t.Errorf("CountPending[%s] = %d, want %d", st, counts[st], want)
		}
	}
}

func TestStatusFeed(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed := postgres.NewStatusFeed(pool, testenv.Logger(t))
	repo.AfterStatusCommit(feed.Announce)
	// Another replica's feed on the same database learns the change through NOTIFY.
	replica := postgres.NewStatusFeed(pool, testenv.Logger(t))
	o := create(t, repo, uuid.NewString(), "")
	other := create(t, repo, uuid.NewString(), "")
	sub, _, unsubscribe := feed.Subscribe(o.ID())
	defer unsubscribe()
	otherSub, _, unsubscribeOther := feed.Subscribe(other.ID())
	defer unsubscribeOther()
	remote, _, unsubscribeRemote := replica.Subscribe(o.ID())
	defer unsubscribeRemote()

	done := make(chan error, 2)
	go func() { done <- feed.Run(ctx) }()
	go func() { done <- replica.Run(ctx) }()
	// Every subscriber is woken once the listener is connected, and told to read its order again.
	for _, s := range []*postgres.Subscription{sub, otherSub, remote} {
		select {
		case <-s.Ready():
		case <-time.After(5 * time.Second):
			t.Fatal("no wake-up on connect")
		}
		if updates, resync := s.Take(); !resync || len(updates) != 0 {
			t.Errorf("on connect: updates %v, resync %v; want a resync", updates, resync)
		}
	}

	apply(t, repo, pool, event(o.ID(), order.PaymentApproved))
	for name, s := range map[string]*postgres.Subscription{"this replica": sub, "another replica": remote} {
		select {
		case <-s.Ready():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no notification", name)
		}
		updates, resync := s.Take()
		if resync || len(updates) != 1 {
			t.Errorf("%s: updates %+v, resync %v; want the change, once", name, updates, resync)
		}
		for _, u := range updates {
			if u.OrderID != o.ID() || u.Change.Status != order.StatusPaymentApproved || u.Version != 2 {
				t.Errorf("%s: update %+v, want the change to PAYMENT_APPROVED, version 2", name, u)
			}
		}
	}
	// The other replica has heard the NOTIFY: so has this one's listener, which skips its own.
	for name, s := range map[string]*postgres.Subscription{"another order's watcher": otherSub, "this replica's watcher, again": sub} {
		select {
		case <-s.Ready():
			t.Errorf("%s was woken: %+v", name, first(s.Take()))
		case <-time.After(200 * time.Millisecond):
		}
	}

	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case _, ok := <-sub.Ready():
		if ok {
			t.Errorf("woken after the feed stopped: %+v", first(sub.Take()))
		}
	case <-time.After(5 * time.Second):
		t.Error("subscription not closed when the feed stopped")
	}
}

func first[A, B any](a A, _ B) A { return a }

// A storm of terminated connections (a failover, a pooler restart) while orders are created:
// every CreateOrder succeeds, once, without the caller retrying.
func TestCreateSurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	repo, pool := newRepo(t)
	ctx := context.Background()
	var db string
	if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	admin, err := pgxpool.New(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	stop := make(chan struct{})
	stormed := make(chan int)
	go func() {
		n := 0
		defer func() { stormed <- n }()
		end := time.After(2 * time.Second) // a storm, then calm: retries must get through
		for {
			select {
			case <-stop:
				return
			case <-end:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var killed int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = $1 AND pid <> pg_backend_pid()) t`, db).Scan(&killed); err == nil {
				n += killed
			}
		}
	}()
	const orders = 200
	var wg sync.WaitGroup
	errs := make(chan error, orders)
	for i := range orders {
		wg.Go(func() {
			key := ""
			if i%2 == 0 {
				key = fmt.Sprintf("storm-%d", i) // with and without an idempotency key
			}
			if _, created, err := store(ctx, repo, newOrder(t, uuid.NewString(), key)); err != nil || !created {
				errs <- fmt.Errorf("order %d: created=%v err=%v", i, created, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	killed := <-stormed
	pool.Reset() // drop the connections the storm terminated
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := count(t, pool, "SELECT count(*) FROM orders"); n != orders {
		t.Errorf("%d orders stored, want %d", n, orders)
	}
	if n := count(t, pool, "SELECT count(*) FROM outbox"); n != orders {
		t.Errorf("%d order.created events, want %d", n, orders)
	}
	if killed == 0 {
		t.Fatal("the storm terminated no connection: the test proved nothing")
	}
	t.Logf("%d connections terminated during %d creates", killed, orders)
}

// migrateTo runs order-service's own migrations on pool up to version, and returns the
// provider that runs the rest.
func migrateTo(t *testing.T, pool *pgxpool.Pool, version int64) *goose.Provider {
	t.Helper()
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, db, postgres.Migrations[0].FS,
		goose.WithTableName(postgres.Migrations[0].Table), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	return p
}
