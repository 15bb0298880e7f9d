package deadline_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/order/internal/deadline"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/outgoing"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

const timeout = time.Minute

type env struct {
	pool *pgxpool.Pool
	repo *postgres.Repository
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := testenv.Postgres(t, "order", postgres.Migrations...)
	return &env{pool: pool, repo: postgres.NewRepository(pool)}
}

func (e *env) sweeper(t *testing.T) (*deadline.Sweeper, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := deadline.New(e.repo, timeout, testenv.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// place stores an order created age ago, moved to status.
func (e *env) place(t *testing.T, age time.Duration, status order.Status) string {
	t.Helper()
	o, err := order.New(order.Params{
		CustomerID:    uuid.NewString(),
		PaymentMethod: "credit_card",
		Items:         []order.Item{{ProductID: uuid.NewString(), Quantity: 1, UnitPrice: 1000}},
	}, time.Now().Add(-age))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.repo.Create(context.Background(), o, outgoing.Created(o)); err != nil {
		t.Fatal(err)
	}
	if status != order.StatusPending {
		e.exec(t, `UPDATE orders SET status = $2, version = version + 1 WHERE id = $1`, o.ID(), string(status))
	}
	return o.ID()
}

func (e *env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) status(t *testing.T, id string) (order.Status, string) {
	t.Helper()
	o, err := e.repo.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o.Status(), o.FailureReason()
}

func TestSweepCancelsOverdueOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	overdue := map[string]order.Status{}
	for _, st := range []order.Status{order.StatusPending, order.StatusPaymentApproved, order.StatusInventoryReserved,
		order.StatusInventoryFailed, order.StatusShippingFailed} {
		overdue[e.place(t, 2*timeout, st)] = st
	}
	ended := map[string]order.Status{}
	for _, st := range []order.Status{order.StatusConfirmed, order.StatusPaymentFailed, order.StatusCancelled} {
		ended[e.place(t, 2*timeout, st)] = st
	}
	young := e.place(t, timeout/2, order.StatusPaymentApproved)

	var mu sync.Mutex
	var announced []order.Update
	e.repo.AfterStatusCommit(func(us []order.Update) {
		mu.Lock()
		defer mu.Unlock()
		announced = append(announced, us...)
	})
	s, reg := e.sweeper(t)
	n, err := s.Sweep(context.Background())
	if err != nil || n != len(overdue) {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, len(overdue))
	}
	for id, was := range overdue {
		st, reason := e.status(t, id)
		if st != order.StatusCancelled || reason == "" {
			t.Errorf("%s order: now %s %q, want CANCELLED", was, st, reason)
		}
		if got := value(t, reg, "ordersaga_orders_cancelled_by_deadline_total", string(was)); got != 1 {
			t.Errorf("cancelled_by_deadline{status=%s} = %v, want 1", was, got)
		}
		var body []byte
		if err := e.pool.QueryRow(context.Background(), `SELECT body FROM outbox WHERE correlation_id = $1 AND routing_key = $2`,
			id, catalog.OrderCancelled).Scan(&body); err != nil {
			t.Fatalf("order %s: no order.cancelled in the outbox: %v", id, err)
		}
		var ev orderv1.OrderCancelled
		if err := proto.Unmarshal(body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetOrderId() != id || ev.GetStuckStatus() != string(was) || ev.GetReason() != deadline.Reason(timeout) {
			t.Errorf("order.cancelled = %v", &ev)
		}
	}
	if len(announced) != len(overdue) {
		t.Errorf("%d status changes announced, want %d", len(announced), len(overdue))
	}
	for id, was := range ended {
		if st, _ := e.status(t, id); st != was {
			t.Errorf("terminal %s order moved to %s", was, st)
		}
	}
	if st, _ := e.status(t, young); st != order.StatusPaymentApproved {
		t.Errorf("order within its deadline moved to %s", st)
	}
	if age := value(t, reg, "ordersaga_oldest_pending_order_age_seconds", ""); age < (timeout/2).Seconds()-1 || age > timeout.Seconds() {
		t.Errorf("oldest pending age = %v, want about %v", age, (timeout / 2).Seconds())
	}

	// Nothing more to do: a second sweep cancels nothing, and writes nothing.
	if n, err := s.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
	if got := e.count(t, `SELECT count(*) FROM outbox WHERE routing_key = $1`, catalog.OrderCancelled); got != len(overdue) {
		t.Errorf("%d order.cancelled events, want %d", got, len(overdue))
	}
	if got := e.count(t, `SELECT count(*) FROM order_status_history WHERE status = 'CANCELLED' AND reason = $1`, deadline.Reason(timeout)); got != len(overdue) {
		t.Errorf("%d CANCELLED history entries, want %d", got, len(overdue))
	}
}

// An order that commits after a sweep with a created_at before it is still
// found once its deadline passes.
func TestSweepFindsLateCommits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s, _ := e.sweeper(t)
	clock := time.Now()
	deadline.SetClock(s, func() time.Time { return clock })
	e.place(t, 0, order.StatusConfirmed)
	if _, err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Created 50 s before that sweep, committed only after it.
	late := e.place(t, 50*time.Second, order.StatusPending)
	clock = clock.Add(20 * time.Second) // 70 s old: past the 60 s deadline
	if n, err := s.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want the late order cancelled", n, err)
	}
	if st, _ := e.status(t, late); st != order.StatusCancelled {
		t.Errorf("late order is %s", st)
	}
}

// An order whose insert becomes visible long after its created_at (CreateOrder retried through
// a failover) is counted among the pending orders as soon as it is visible, and cancelled once
// its deadline passes, however many sweeps ran before it appeared.
func TestSweepFindsOrdersVisibleLate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const timeout = 10 * time.Minute
	reg := prometheus.NewRegistry()
	s, err := deadline.New(e.repo, timeout, testenv.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	deadline.SetClock(s, func() time.Time { return clock })
	e.place(t, time.Hour, order.StatusConfirmed)
	for range 3 {
		if _, err := s.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(5 * time.Second)
	}
	// Stamped 3 minutes ago, visible only now.
	late := e.place(t, 3*time.Minute, order.StatusPending)
	if n, err := s.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want nothing cancelled yet", n, err)
	}
	if got := value(t, reg, "ordersaga_orders", string(order.StatusPending)); got != 1 {
		t.Errorf("orders{status=PENDING} = %v, want the late order counted", got)
	}
	if age := value(t, reg, "ordersaga_oldest_pending_order_age_seconds", ""); age < 180 {
		t.Errorf("oldest pending age = %vs, want the late order's (over 180s)", age)
	}
	clock = clock.Add(timeout)
	if n, err := s.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want the late order cancelled", n, err)
	}
	if st, reason := e.status(t, late); st != order.StatusCancelled || reason != deadline.Reason(timeout) {
		t.Errorf("late order is %s %q, want CANCELLED by the deadline", st, reason)
	}
	if got := value(t, reg, "ordersaga_orders", string(order.StatusPending)); got != 0 {
		t.Errorf("orders{status=PENDING} = %v after the cancel, want 0", got)
	}
}

// Replicas sweeping at once cancel each order exactly once.
func TestSweepReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const orders = 600
	for range orders {
		e.place(t, 2*timeout, order.StatusPending)
	}
	var wg sync.WaitGroup
	counts := make([]int, 3)
	for i := range counts {
		s, _ := e.sweeper(t)
		wg.Go(func() {
			n, err := s.Sweep(context.Background())
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	if sum := counts[0] + counts[1] + counts[2]; sum != orders {
		t.Errorf("replicas cancelled %v, %d in all, want %d", counts, sum, orders)
	}
	if got := e.count(t, `SELECT count(*) FROM outbox WHERE routing_key = $1`, catalog.OrderCancelled); got != orders {
		t.Errorf("%d order.cancelled events, want %d", got, orders)
	}
	if got := e.count(t, `SELECT count(*) FROM orders WHERE status <> 'CANCELLED'`); got != 0 {
		t.Errorf("%d orders not cancelled", got)
	}
}

// value returns the value of one series of a registered metric.
func value(t *testing.T, reg *prometheus.Registry, name, status string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if status == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == status) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{status=%q}", name, status)
	return 0
}
