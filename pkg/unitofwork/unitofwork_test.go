package unitofwork_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
)

// store is a service's store for the tests: the rule records each event it applies, written
// to a table with the commit.
type store struct {
	tx  database.Querier
	rec *recorder
	// Read ahead by Prepare: the orders it was given, and how many of them were applied before.
	ahead        []string
	appliedAhead int
	seen         []rules.Event[*orderv1.OrderCreated] // what the rule was given
	applied      [][2]*string                         // event id, order id: written by Flush
	panicAtFlush bool
}

func (s *store) Prepare(b *pgx.Batch, batch unitofwork.Batch) {
	s.ahead = batch.OrderIDs
	b.Queue(`SELECT count(*) FROM applied WHERE order_id = ANY($1::text[]::uuid[])`, batch.OrderIDs).QueryRow(func(row pgx.Row) error {
		return row.Scan(&s.appliedAhead)
	})
}

func (s *store) Flush(b *pgx.Batch) error {
	if s.panicAtFlush {
		panic("the store's writes panicked")
	}
	s.rec.saw(s)
	for _, row := range s.applied {
		b.Queue(`INSERT INTO applied (event_id, order_id) VALUES ($1, $2)`, row[0], row[1])
	}
	return nil
}

func (s *store) Committed() { s.rec.committed() }

// recorder sees what the rules were given, per attempt that reached the commit, and how often
// a store was told of a commit.
type recorder struct {
	mu      sync.Mutex
	batches [][]rules.Event[*orderv1.OrderCreated]
	ahead   []readAhead // what the store had read ahead, per batch the rule saw
	commits int
}

type readAhead struct {
	orders  []string
	applied int
}

func (r *recorder) saw(s *store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, s.seen)
	r.ahead = append(r.ahead, readAhead{s.ahead, s.appliedAhead})
}

func (r *recorder) committed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

var errRefused = errors.New("refused by the rule")

// Payment methods that make the test rule misbehave.
const (
	methodReject = "reject" // the rule refuses the event for good
	methodFail   = "fail"   // the rule fails the whole batch
	methodQuery  = "query"  // the rule writes at once rather than with the commit
	// The rule records the event with a write that fails at the commit.
	methodFlushFail = "flush-fail"
	// The rule records the event so that the store panics when it queues its writes.
	methodFlushPanic = "flush-panic"
)

// applyOrderCreated records the event, to be written with the commit, and announces a
// payment.failed for it. It refuses an event whose payment method is methodReject, and fails the
// batch on methodFail.
func applyOrderCreated(ctx context.Context, s *store, ev rules.Event[*orderv1.OrderCreated]) ([]outbox.Event, error) {
	s.seen = append(s.seen, ev)
	switch ev.Msg.GetPaymentMethod() {
	case methodReject:
		return nil, failure.Permanent(errRefused)
	case methodFail:
		return nil, errors.New("the database went away")
	case methodQuery:
		if _, err := s.tx.Exec(ctx, `INSERT INTO applied (event_id, order_id) VALUES ($1, $2)`, ev.ID, ev.OrderID); err != nil {
			return nil, err
		}
	case methodFlushPanic:
		s.panicAtFlush = true
	case methodFlushFail:
		s.applied = append(s.applied, [2]*string{&ev.ID, nil}) // NOT NULL: fails when the commit sends it
	default:
		s.applied = append(s.applied, [2]*string{&ev.ID, &ev.OrderID})
	}
	id := uuid.NewString()
	return []outbox.Event{{ID: id, OrderID: ev.OrderID, RoutingKey: catalog.PaymentFailed,
		Payload: &paymentv1.PaymentFailed{EventId: id, OrderId: ev.OrderID, Reason: "test"}}}, nil
}

func validateOrderCreated(ev *orderv1.OrderCreated) error {
	if ev.GetTotalMinor() < 0 {
		return failure.Invalid("negative total_minor %d", ev.GetTotalMinor())
	}
	return nil
}

func nothing[T rules.Message](context.Context, *store, rules.Event[T]) ([]outbox.Event, error) {
	return nil, nil
}

// newRules returns payment's rules with the test rule for order.created and rules that do
// nothing for its other events.
func newRules() *rules.Registry[*store] {
	reg := rules.New[*store](catalog.Payment)
	rules.On(reg, catalog.OrderCreated, validateOrderCreated, applyOrderCreated)
	rules.On(reg, catalog.InventoryFailed, nil, nothing[*inventoryv1.InventoryFailed])
	rules.On(reg, catalog.InventoryReleased, nil, nothing[*inventoryv1.InventoryReleased])
	rules.On(reg, catalog.OrderCancelled, nil, nothing[*orderv1.OrderCancelled])
	return reg
}

// newRunner returns the runner of newRules on pool. The relay is not running: rows stay in the
// outbox.
func newRunner(t *testing.T, pool *pgxpool.Pool, rec *recorder) *unitofwork.Runner[*store] {
	t.Helper()
	log := testenv.Logger(t)
	return unitofwork.New(newRules(), pool, outbox.NewRelay(pool, nil, log), log, func(tx database.Querier) *store {
		return &store{tx: tx, rec: rec}
	})
}

func setup(t *testing.T) (broker.Handler, *pgxpool.Pool, *recorder) {
	t.Helper()
	pool := testenv.Postgres(t, "unitofwork", inbox.Migrations, outbox.Migrations)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE applied (event_id uuid NOT NULL, order_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return orderCreatedHandler(t, newRunner(t, pool, rec)), pool, rec
}

func orderCreatedHandler(t *testing.T, svc *unitofwork.Runner[*store]) broker.Handler {
	t.Helper()
	handlers, err := svc.Handlers()
	if err != nil {
		t.Fatalf("handlers: %v", err)
	}
	h, ok := handlers[catalog.Subscription{Consumer: catalog.Payment, RoutingKey: catalog.OrderCreated}]
	if !ok {
		t.Fatal("no handler for order.created")
	}
	return h
}

func orderCreated(method string) *orderv1.OrderCreated {
	return &orderv1.OrderCreated{EventId: uuid.NewString(), OrderId: uuid.NewString(), PaymentMethod: method, TotalMinor: 100}
}

func delivery(t *testing.T, ev proto.Message) amqp.Delivery {
	t.Helper()
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return amqp.Delivery{Type: string(ev.ProtoReflect().Descriptor().FullName()), RoutingKey: catalog.OrderCreated, Body: body}
}

func deliveries(t *testing.T, evs ...*orderv1.OrderCreated) []amqp.Delivery {
	t.Helper()
	ds := make([]amqp.Delivery, len(evs))
	for i, ev := range evs {
		ds[i] = delivery(t, ev)
	}
	return ds
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestAnEventTakesEffectOnce(t *testing.T) {
	t.Parallel()
	h, pool, rec := setup(t)
	ctx := context.Background()
	a, b, c := orderCreated("card"), orderCreated("card"), orderCreated("card")

	// Twice in one batch, then again in a later batch.
	if err := h(ctx, deliveries(t, a, a, b)); err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, deliveries(t, b, c, a)); err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, deliveries(t, c)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*orderv1.OrderCreated{a, b, c} {
		if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1`, ev.EventId); n != 1 {
			t.Errorf("event %s applied %d times, want once", ev.EventId, n)
		}
		if n := count(t, pool, `SELECT count(*) FROM outbox WHERE correlation_id = $1`, ev.OrderId); n != 1 {
			t.Errorf("event %s announced %d times, want once", ev.EventId, n)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM idempotency_keys WHERE queue = 'payment.order-created'`); n != 3 {
		t.Errorf("%d events claimed on the queue, want 3", n)
	}
	// The rule saw [a b], then [c]; the last batch held nothing new and never reached it.
	if len(rec.batches) != 2 || len(rec.batches[0]) != 2 || len(rec.batches[1]) != 1 || rec.batches[1][0].ID != c.EventId {
		t.Errorf("the rule saw %d batches: %+v", len(rec.batches), rec.batches)
	}
	if rec.commits != 2 {
		t.Errorf("stores told of %d commits, want 2", rec.commits)
	}
}

func TestEventIDsAreCanonical(t *testing.T) {
	t.Parallel()
	h, pool, rec := setup(t)
	ctx := context.Background()
	ev := orderCreated("card")
	upper := proto.Clone(ev).(*orderv1.OrderCreated)
	upper.EventId, upper.OrderId = strings.ToUpper(ev.EventId), strings.ToUpper(ev.OrderId)

	// The same event in capitals and in lower case, in one batch and in two: one event.
	if err := h(ctx, deliveries(t, upper, ev)); err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, deliveries(t, ev)); err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, deliveries(t, upper)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM applied`); n != 1 {
		t.Errorf("applied %d times, want once", n)
	}
	if len(rec.batches) != 1 || len(rec.batches[0]) != 1 {
		t.Fatalf("the rule saw %+v, want one batch of one", rec.batches)
	}
	got := rec.batches[0][0]
	if got.ID != ev.EventId || got.OrderID != ev.OrderId {
		t.Errorf("the rule was given ids %s / %s, want the lower-case %s / %s", got.ID, got.OrderID, ev.EventId, ev.OrderId)
	}
}

func TestARejectedEventLeavesTheOthersCommitted(t *testing.T) {
	t.Parallel()
	h, pool, rec := setup(t)
	ctx := context.Background()
	good1, bad, good2 := orderCreated("card"), orderCreated(methodReject), orderCreated("card")

	err := h(ctx, deliveries(t, good1, bad, good2))
	var rej broker.Rejected
	if !errors.As(err, &rej) || len(rej) != 1 || !errors.Is(rej[1], errRefused) {
		t.Fatalf("error = %v, want delivery 1 rejected for the rule's reason", err)
	}
	for _, ev := range []*orderv1.OrderCreated{good1, good2} {
		if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1`, ev.EventId); n != 1 {
			t.Errorf("good event applied %d times, want once", n)
		}
		if n := count(t, pool, `SELECT count(*) FROM outbox WHERE correlation_id = $1`, ev.OrderId); n != 1 {
			t.Errorf("good event announced %d times, want once", n)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1`, bad.EventId); n != 0 {
		t.Errorf("the rejected event took effect")
	}
	// Not claimed: it is dead-lettered, and a replay after a fix is handled afresh.
	if n := count(t, pool, `SELECT count(*) FROM idempotency_keys WHERE event_id = $1`, bad.EventId); n != 0 {
		t.Errorf("the rejected event was claimed")
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d outbox rows, want 2", n)
	}
	if rec.commits != 1 {
		t.Errorf("stores told of %d commits, want 1", rec.commits)
	}
}

func TestAFailedRuleUndoesTheBatch(t *testing.T) {
	t.Parallel()
	h, pool, rec := setup(t)
	ctx := context.Background()
	err := h(ctx, deliveries(t, orderCreated("card"), orderCreated(methodFail)))
	var rej broker.Rejected
	if err == nil || errors.As(err, &rej) || failure.IsPermanent(err) {
		t.Fatalf("error = %v, want the rule's error, neither permanent nor a rejection", err)
	}
	for _, table := range []string{"applied", "outbox", "idempotency_keys"} {
		if n := count(t, pool, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%s has %d rows after a rollback", table, n)
		}
	}
	if rec.commits != 0 {
		t.Errorf("a store was told of a commit after a rollback")
	}
}

func TestWritesAtOnceAndAtTheCommitCommitTogether(t *testing.T) {
	t.Parallel()
	h, pool, rec := setup(t)
	ctx := context.Background()
	a, b := orderCreated(methodQuery), orderCreated("card")
	if err := h(ctx, deliveries(t, a, b)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*orderv1.OrderCreated{a, b} {
		if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1 AND order_id = $2`, ev.EventId, ev.OrderId); n != 1 {
			t.Errorf("event %s (%s) applied %d times, want once", ev.EventId, ev.PaymentMethod, n)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d outbox rows, want 2", n)
	}
	if rec.commits != 1 {
		t.Errorf("stores told of %d commits, want 1", rec.commits)
	}
}

func TestAFailedWriteAtTheCommitUndoesTheBatch(t *testing.T) {
	t.Parallel()
	h, pool, rec := setup(t)
	ctx := context.Background()
	err := h(ctx, deliveries(t, orderCreated("card"), orderCreated(methodFlushFail)))
	var rej broker.Rejected
	if err == nil || errors.As(err, &rej) {
		t.Fatalf("error = %v, want the failed write's error, not a rejection", err)
	}
	for _, table := range []string{"applied", "outbox", "idempotency_keys"} {
		if n := count(t, pool, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%s has %d rows after the commit failed", table, n)
		}
	}
	if rec.commits != 0 {
		t.Errorf("a store was told of a commit that failed")
	}
	// The connection was rolled back, not left in the failed transaction: the next batch commits.
	ok := orderCreated("card")
	if err := h(ctx, deliveries(t, ok)); err != nil {
		t.Fatalf("next batch: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1`, ok.EventId); n != 1 {
		t.Errorf("the next batch applied %d times, want once", n)
	}
}

func TestAPreparerReadsAheadForEveryEventOfTheBatch(t *testing.T) {
	t.Parallel()
	h, _, rec := setup(t)
	ctx := context.Background()
	a, b := orderCreated("card"), orderCreated("card")
	if err := h(ctx, deliveries(t, a)); err != nil {
		t.Fatal(err)
	}
	// a again, claimed already: its order is read ahead all the same, before the rule runs.
	if err := h(ctx, deliveries(t, a, b)); err != nil {
		t.Fatal(err)
	}
	if len(rec.ahead) != 2 {
		t.Fatalf("the rule saw %d batches, want 2", len(rec.ahead))
	}
	want := slices.Sorted(slices.Values([]string{a.OrderId, b.OrderId}))
	if got := rec.ahead[1]; !slices.Equal(got.orders, want) || got.applied != 1 {
		t.Errorf("second batch read ahead %v with %d applied, want %v (sorted) with 1", got.orders, got.applied, want)
	}
}

func TestUndecodableDeliveriesAreRejectedWithoutTouchingTheDatabase(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	pool := testenv.Postgres(t, "unitofwork", inbox.Migrations, outbox.Migrations)
	// A closed pool: any transaction would fail the batch instead of rejecting its deliveries.
	pool.Close()
	h := orderCreatedHandler(t, newRunner(t, pool, rec))

	wrongType := delivery(t, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: uuid.NewString()})
	garbage := delivery(t, orderCreated("card"))
	garbage.Body = []byte{0xff, 0xff, 0xff}
	badEventID := orderCreated("card")
	badEventID.EventId = "event-1"
	badOrderID := orderCreated("card")
	badOrderID.OrderId = ""
	invalid := orderCreated("card")
	invalid.TotalMinor = -1
	batch := []amqp.Delivery{wrongType, garbage, delivery(t, badEventID), delivery(t, badOrderID), delivery(t, invalid)}

	err := h(context.Background(), batch)
	var rej broker.Rejected
	if !errors.As(err, &rej) || len(rej) != len(batch) {
		t.Fatalf("error = %v, want all %d deliveries rejected", err, len(batch))
	}
	for i := range batch {
		if rej[i] == nil {
			t.Errorf("delivery %d not rejected", i)
		}
	}
	if !strings.Contains(rej[0].Error(), "payment.v1.PaymentApproved") || !strings.Contains(rej[4].Error(), "negative total_minor") {
		t.Errorf("reasons do not say what is wrong: %v", rej)
	}
	if rec.calls() != 0 {
		t.Errorf("a unit of work reached its commit for undecodable deliveries")
	}
}

func TestHandlersNeedARuleForEverySubscriptionAndNoOther(t *testing.T) {
	t.Parallel()
	missing := rules.New[*store](catalog.Payment)
	rules.On(missing, catalog.OrderCreated, nil, applyOrderCreated)
	rules.On(missing, catalog.InventoryReleased, nil, nothing[*inventoryv1.InventoryReleased])
	rules.On(missing, catalog.OrderCancelled, nil, nothing[*orderv1.OrderCancelled])
	if _, err := unitofwork.New(missing, nil, nil, testenv.Logger(t), func(database.Querier) *store { return &store{} }).Handlers(); err == nil || !strings.Contains(err.Error(), catalog.InventoryFailed) {
		t.Errorf("a service without a rule for inventory.failed: err = %v", err)
	}

	extra := newRules()
	rules.On(extra, catalog.PaymentApproved, nil, nothing[*paymentv1.PaymentApproved])
	if _, err := extra.Handlers(); err == nil {
		t.Error("a service with a rule for an event it does not consume has handlers")
	}

	defer func() {
		if recover() == nil {
			t.Error("a rule whose message is not the event's was accepted")
		}
	}()
	rules.On(extra, catalog.InventoryFailed, nil, nothing[*inventoryv1.InventoryReleased])
}

func TestApplyRunsARuleWithoutADatabase(t *testing.T) {
	t.Parallel()
	reg := newRules()
	ctx := context.Background()
	body, err := proto.Marshal(&inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Apply(ctx, &store{}, catalog.InventoryFailed, body); err != nil {
		t.Errorf("Apply: %v", err)
	}
	if _, err := reg.Apply(ctx, &store{}, "order.unknown", body); err == nil {
		t.Error("Apply of a routing key without a rule succeeded")
	}
	if _, err := reg.Apply(ctx, &store{}, catalog.InventoryFailed, []byte{0xff}); !failure.IsPermanent(err) {
		t.Errorf("Apply of garbage: err = %v, want a permanent one", err)
	}
	refused, err := proto.Marshal(orderCreated(methodReject))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Apply(ctx, &store{}, catalog.OrderCreated, refused); !failure.IsPermanent(err) || !errors.Is(err, errRefused) {
		t.Errorf("Apply of an event the rule refuses: err = %v, want the rule's permanent error", err)
	}
}

// TestBatchesSharingAnOrderWaitForEachOther holds a unit of work open on an order and sends
// another event of the same order in a second batch: the second waits for the first to commit,
// and reads what it wrote, however its events are ordered.
// holdingRules returns newRules with a rule for order.created that, for the event held, tells
// held and waits for release before going on; with methodPanic it panics.
func holdingRules(held *orderv1.OrderCreated, heldCh, release chan struct{}) *rules.Registry[*store] {
	reg := rules.New[*store](catalog.Payment)
	rules.On(reg, catalog.OrderCreated, nil, func(ctx context.Context, s *store, ev rules.Event[*orderv1.OrderCreated]) ([]outbox.Event, error) {
		if ev.Msg.GetPaymentMethod() == methodPanic {
			panic("the rule panicked")
		}
		out, err := applyOrderCreated(ctx, s, ev)
		if ev.ID == held.EventId {
			close(heldCh)
			<-release
		}
		return out, err
	})
	rules.On(reg, catalog.InventoryFailed, nil, nothing[*inventoryv1.InventoryFailed])
	rules.On(reg, catalog.InventoryReleased, nil, nothing[*inventoryv1.InventoryReleased])
	rules.On(reg, catalog.OrderCancelled, nil, nothing[*orderv1.OrderCancelled])
	return reg
}

// methodPanic makes holdingRules' rule panic.
const methodPanic = "panic"

// handlersOf returns a runner's handlers by routing key.
func handlersOf(t *testing.T, r *unitofwork.Runner[*store]) map[string]broker.Handler {
	t.Helper()
	hs, err := r.Handlers()
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]broker.Handler{}
	for sub, h := range hs {
		byKey[sub.RoutingKey] = h
	}
	return byKey
}

func TestBatchesSharingAnOrderWaitForEachOther(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "unitofwork", inbox.Migrations, outbox.Migrations)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE applied (event_id uuid NOT NULL, order_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	first, second := orderCreated(methodQuery), orderCreated("card")
	second.OrderId = first.OrderId
	other := orderCreated("card")
	// The first batch's rule writes at once, then waits until the test lets it commit.
	held, release := make(chan struct{}), make(chan struct{})
	log := testenv.Logger(t)
	// Two replicas' runners: only the order's lock makes the second wait for the first.
	replica := func() broker.Handler {
		return orderCreatedHandler(t, unitofwork.New(holdingRules(first, held, release), pool, outbox.NewRelay(pool, nil, log), log, func(tx database.Querier) *store {
			return &store{tx: tx, rec: rec}
		}))
	}
	h1, h2 := replica(), replica()

	done := make(chan error, 2)
	go func() { done <- h1(ctx, deliveries(t, first)) }()
	<-held
	go func() { done <- h2(ctx, deliveries(t, other, second)) }()
	time.Sleep(500 * time.Millisecond)
	if n := rec.calls(); n != 0 {
		t.Errorf("%d units of work committed while the first held the order", n)
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.ahead) != 2 || rec.ahead[1].applied != 1 {
		t.Errorf("read ahead %+v: the second batch should have found the first's write", rec.ahead)
	}
}

// groupSetup returns the handlers of a runner whose order.created rule holds the event held,
// and the pool and recorder behind them.
func groupSetup(t *testing.T, held *orderv1.OrderCreated, heldCh, release chan struct{}) (map[string]broker.Handler, *pgxpool.Pool, *recorder) {
	t.Helper()
	pool := testenv.Postgres(t, "unitofwork", inbox.Migrations, outbox.Migrations)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE applied (event_id uuid NOT NULL, order_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	log := testenv.Logger(t)
	r := unitofwork.New(holdingRules(held, heldCh, release), pool, outbox.NewRelay(pool, nil, log), log, func(tx database.Querier) *store {
		return &store{tx: tx, rec: rec}
	})
	return handlersOf(t, r), pool, rec
}

// during calls each of calls in its own goroutine while a unit of work holds, then lets it
// commit, and returns what each of calls and the first (the held one) returned.
func during(t *testing.T, first func() error, heldCh, release chan struct{}, calls ...func() error) ([]error, error) {
	t.Helper()
	firstDone := make(chan error, 1)
	go func() { firstDone <- first() }()
	<-heldCh
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() { errs[i] = call() })
	}
	time.Sleep(300 * time.Millisecond) // every call is waiting for the next unit of work
	close(release)
	returned := make(chan struct{})
	go func() {
		wg.Wait()
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(20 * time.Second):
		t.Fatal("calls waiting for a unit of work never returned")
	}
	return errs, <-firstDone
}

func TestBatchesOfSeveralQueuesShareTheNextUnitOfWork(t *testing.T) {
	t.Parallel()
	first := orderCreated("card")
	heldCh, release := make(chan struct{}), make(chan struct{})
	hs, pool, rec := groupSetup(t, first, heldCh, release)
	ctx := context.Background()
	a, b := orderCreated("card"), orderCreated("card")
	failed := &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: uuid.NewString(), Reason: "test"}

	errs, err := during(t, func() error { return hs[catalog.OrderCreated](ctx, deliveries(t, first)) }, heldCh, release,
		func() error { return hs[catalog.OrderCreated](ctx, deliveries(t, a)) },
		func() error { return hs[catalog.OrderCreated](ctx, deliveries(t, b)) },
		func() error { return hs[catalog.InventoryFailed](ctx, []amqp.Delivery{delivery(t, failed)}) })
	if err := errors.Join(append(errs, err)...); err != nil {
		t.Fatal(err)
	}
	if rec.commits != 2 {
		t.Errorf("%d commits, want 2: the held unit of work, then one for the three batches that waited", rec.commits)
	}
	if len(rec.batches) != 2 || len(rec.batches[1]) != 2 {
		t.Errorf("the rule saw %+v, want [first], then [a b] together", rec.batches)
	}
	for queue, want := range map[string]int{"payment.order-created": 3, "payment.inventory-failed": 1} {
		if n := count(t, pool, `SELECT count(*) FROM idempotency_keys WHERE queue = $1`, queue); n != want {
			t.Errorf("%d events claimed on %s, want %d", n, queue, want)
		}
	}
}

func TestAFailedRuleFailsOnlyItsOwnBatchOfAUnitOfWork(t *testing.T) {
	t.Parallel()
	first := orderCreated("card")
	heldCh, release := make(chan struct{}), make(chan struct{})
	hs, pool, _ := groupSetup(t, first, heldCh, release)
	ctx := context.Background()
	good, failing, panicking, rejected := orderCreated("card"), orderCreated(methodFail), orderCreated(methodPanic), orderCreated(methodReject)
	goodToo := orderCreated("card")
	h := hs[catalog.OrderCreated]

	errs, err := during(t, func() error { return h(ctx, deliveries(t, first)) }, heldCh, release,
		func() error { return h(ctx, deliveries(t, good)) },
		func() error { return h(ctx, deliveries(t, failing)) },
		func() error { return h(ctx, deliveries(t, panicking)) },
		func() error { return h(ctx, deliveries(t, goodToo, rejected)) })
	if err != nil || errs[0] != nil {
		t.Errorf("a good batch failed: held %v, waiting %v", err, errs[0])
	}
	for i, want := range map[int]string{1: "the database went away", 2: "panicked"} {
		var rej broker.Rejected
		if errs[i] == nil || errors.As(errs[i], &rej) || !strings.Contains(errs[i].Error(), want) {
			t.Errorf("batch %d: error %v, want its own rule's error %q", i, errs[i], want)
		}
	}
	var rej broker.Rejected
	if !errors.As(errs[3], &rej) || len(rej) != 1 || !errors.Is(rej[1], errRefused) {
		t.Errorf("batch 3: error %v, want its delivery 1 rejected", errs[3])
	}
	for _, ev := range []*orderv1.OrderCreated{first, good, goodToo} {
		if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1`, ev.EventId); n != 1 {
			t.Errorf("event %s applied %d times, want once", ev.EventId, n)
		}
	}
	for _, ev := range []*orderv1.OrderCreated{failing, panicking, rejected} {
		if n := count(t, pool, `SELECT count(*) FROM idempotency_keys WHERE event_id = $1`, ev.EventId); n != 0 {
			t.Errorf("event %s claimed, but its batch failed", ev.EventId)
		}
	}
}

// otherStore is a Tx that is not the store the rules take.
type otherStore struct{ store }

func TestNewRefusesAStoreTheRulesDoNotTake(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "payment") {
			t.Errorf("recovered %v, want a panic naming the service", r)
		}
	}()
	unitofwork.New(rules.New[*store](catalog.Payment), nil, nil, testenv.Logger(t), func(database.Querier) *otherStore { return &otherStore{} })
}

func TestAPanicOutsideTheRulesFailsTheGroupAndHandsOver(t *testing.T) {
	t.Parallel()
	first := orderCreated("card")
	heldCh, release := make(chan struct{}), make(chan struct{})
	hs, pool, _ := groupSetup(t, first, heldCh, release)
	ctx := context.Background()
	h := hs[catalog.OrderCreated]
	// As broker.Recoverer does for a consumer: a panic is the call's error.
	call := func(evs ...*orderv1.OrderCreated) func() error {
		return func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			return h(ctx, deliveries(t, evs...))
		}
	}
	bad, caught := orderCreated(methodFlushPanic), orderCreated("card")

	errs, err := during(t, call(first), heldCh, release, call(bad), call(caught))
	if err != nil {
		t.Errorf("the held batch failed: %v", err)
	}
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Errorf("batch %d of the group that panicked: error %v, want the panic", i, err)
		}
	}
	// The runner handed over: the next batch runs, and the one caught in the group takes
	// effect when tried again.
	done := make(chan error, 1)
	go func() { done <- call(caught)() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the batch after the panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runner never ran another unit of work after the panic")
	}
	if n := count(t, pool, `SELECT count(*) FROM applied WHERE event_id = $1`, caught.EventId); n != 1 {
		t.Errorf("the batch caught in the group applied %d times after its retry, want once", n)
	}
}
