// Package deadline ends the orders whose saga outlived ORDER_SAGA_TIMEOUT: a sweep cancels
// every order not terminal that long after its creation (order.cancelled tells the other
// services to undo their part), and measures the age of the oldest order still under way.
//
// Candidates come from the set of open orders the store keeps (every order not terminal, by
// creation time), not from a created_at watermark: an order's created_at is taken before its
// insert commits, and a commit retried through a failover can become visible long after orders
// stamped later, behind any watermark a sweep could have moved past. A deadline that passed
// while order-service was down is acted on at the first sweep.
package deadline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/outgoing"
)

// batch is how many orders one cancelling transaction takes.
const batch = 256

// Store is what a sweep needs from storage.
type Store interface {
	// UpdateOverdue locks at most limit orders created before before that are not terminal,
	// oldest first, skipping those locked elsewhere, and in the same transaction stores the
	// changes and the events that update makes of them. It returns how many orders it
	// locked. An order is a candidate as soon as its insert is visible, whatever its
	// created_at, and the cost follows the orders not terminal, not the whole table.
	UpdateOverdue(ctx context.Context, before time.Time, limit int, update Update) (int, error)
	// OldestPending returns the creation time of the oldest order that is not terminal, and
	// false when there is none.
	OldestPending(ctx context.Context) (time.Time, bool, error)
	// CountPending counts the orders in each non-terminal status.
	CountPending(ctx context.Context) (map[order.Status]int64, error)
}

// Update decides what becomes of overdue orders: the changes to store and the events to
// publish with them. An alias, so that a store implements Store without importing this package.
type Update = func(overdue []*order.Order) ([]order.Change, []outbox.Event, error)

// Sweeper cancels overdue orders. One per process; replicas share the work through row locks.
type Sweeper struct {
	store    Store
	timeout  time.Duration
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	cancelled *prometheus.CounterVec
	oldest    prometheus.Gauge
	pending   *prometheus.GaugeVec
}

// New returns a sweeper cancelling orders not terminal timeout after their creation, and
// registers its metrics with reg.
func New(store Store, timeout time.Duration, log *slog.Logger, reg prometheus.Registerer) (*Sweeper, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("saga timeout %s is not positive", timeout)
	}
	s := &Sweeper{
		store:   store,
		timeout: timeout,
		// Every few seconds, and often enough that an order is cancelled soon after its deadline.
		interval: min(5*time.Second, max(timeout/10, 100*time.Millisecond)),
		log:      log,
		now:      time.Now,
		cancelled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordersaga_orders_cancelled_by_deadline_total",
			Help: "Orders cancelled because they were not terminal ORDER_SAGA_TIMEOUT after their creation, by the status they were stuck in.",
		}, []string{"status"}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordersaga_oldest_pending_order_age_seconds",
			Help: "Age of the oldest order that is not terminal (0 when there is none).",
		}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ordersaga_orders",
			Help: "Orders not terminal yet, by status (terminal outcomes: ordersaga_order_completion_seconds_count).",
		}, []string{"status"}),
	}
	for _, c := range []prometheus.Collector{s.cancelled, s.oldest, s.pending} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, st := range order.Statuses {
		if !st.Terminal() {
			s.cancelled.WithLabelValues(string(st)) // every series exists from the start
		}
	}
	return s, nil
}

// Reason is the failure reason of an order cancelled by the deadline.
func Reason(timeout time.Duration) string {
	return fmt.Sprintf("saga deadline passed: not terminal %s after creation (ORDER_SAGA_TIMEOUT)", timeout)
}

// Run sweeps at once and then every interval until ctx ends. A failed sweep is logged and
// tried again at the next tick.
func (s *Sweeper) Run(ctx context.Context) error {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "deadline sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sweep cancels every order past its deadline, in batches, then measures the orders still
// under way. It returns how many orders it cancelled.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	start := s.now()
	cutoff := start.Add(-s.timeout)
	reason := Reason(s.timeout)
	total := 0
	for {
		var cancelled []cancellation
		n, err := s.store.UpdateOverdue(ctx, cutoff, batch, func(overdue []*order.Order) (changes []order.Change, events []outbox.Event, err error) {
			changes, events, cancelled, err = cancel(overdue, reason, s.now())
			return changes, events, err
		})
		if err != nil {
			return total, err
		}
		for _, c := range cancelled {
			s.cancelled.WithLabelValues(string(c.stuck)).Inc()
			s.log.InfoContext(ctx, "order cancelled by its saga deadline", "order_id", c.orderID, "stuck_status", string(c.stuck))
		}
		total += len(cancelled)
		if n < batch || len(cancelled) == 0 {
			break // the rest is locked elsewhere, or ended meanwhile: the next sweep sees
		}
	}
	oldest, ok, err := s.store.OldestPending(ctx)
	if err != nil {
		return total, err
	}
	if ok {
		s.oldest.Set(max(0, start.Sub(oldest).Seconds()))
	} else {
		s.oldest.Set(0)
	}
	counts, err := s.store.CountPending(ctx)
	if err != nil {
		return total, err
	}
	for _, st := range order.Statuses {
		if !st.Terminal() {
			s.pending.WithLabelValues(string(st)).Set(float64(counts[st]))
		}
	}
	return total, nil
}

// cancellation is an order the sweep cancelled, and the status it was stuck in.
type cancellation struct {
	orderID string
	stuck   order.Status
}

// cancel moves each overdue order to CANCELLED by the order domain's DeadlinePassed, with the
// order.cancelled event that tells the other services to undo their part. An order the domain
// does not move (terminal meanwhile) is left as it is.
func cancel(overdue []*order.Order, reason string, now time.Time) ([]order.Change, []outbox.Event, []cancellation, error) {
	var (
		changes   []order.Change
		events    []outbox.Event
		cancelled []cancellation
	)
	for _, o := range overdue {
		stuck := o.Status()
		e := order.Event{ID: uuid.Must(uuid.NewV7()).String(), OrderID: o.ID(), Kind: order.DeadlinePassed, Reason: reason}
		change, changed, err := o.Apply(e, now)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("order %s: %w", o.ID(), err)
		}
		if !changed {
			continue
		}
		changes = append(changes, order.Change{Event: e, StatusChange: change, Update: o.Update(change)})
		events = append(events, outgoing.Cancelled(e, stuck, now))
		cancelled = append(cancelled, cancellation{orderID: o.ID(), stuck: stuck})
	}
	return changes, events, cancelled, nil
}
