// Package unitofwork runs a service's rules (pkg/rules) on PostgreSQL and RabbitMQ, a batch of
// deliveries at a time, the same way in every service: decode and validate each delivery, drop
// in-batch repeats, then one transaction that locks the batch's orders in sorted order, claims
// the events in the inbox and lets the store read ahead, all in the round trip that begins it;
// the rules run one event at a time; the store's writes and the outbox go with the COMMIT; what
// was written to the outbox is handed to the relay. A rule that refuses its event for good
// (failure.Permanent) has the batch applied again without it, and the event dead-lettered.
// Batches of a service's queues that arrive while one of its units of work runs share the next
// (see Runner.submit). A service supplies its rules and a store; the batching is written once,
// here.
package unitofwork

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
)

// stageLatency is how long events take from occurring to having taken effect: the saga's
// per-stage latency, by queue.
var stageLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "ordersaga_stage_latency_seconds",
	Help:    "Time from an event occurring to its effect being committed, by queue.",
	Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
}, []string{"queue"})

// stageWait is the part of stageLatency spent before the unit of work began: in the
// publisher's outbox and relay, in the broker, and behind the batch before it.
var stageWait = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "ordersaga_stage_wait_seconds",
	Help:    "Time from an event occurring to the unit of work that applies it beginning, by queue.",
	Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
}, []string{"queue"})

// unitEvents is how many events each committed unit of work held, by service: more than a
// queue's batch when batches of several queues shared it.
var unitEvents = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "ordersaga_unit_of_work_events",
	Help:    "Events per committed unit of work, every queue's together, by service.",
	Buckets: prometheus.ExponentialBuckets(1, 2, 9),
}, []string{"service"})

// Tx is a service's store as the runner drives it through one transaction.
type Tx interface {
	// Prepare queues the reads the rules will make for batch into the round trip that begins
	// the transaction; the batch's orders are locked by then. Reads the store did not prepare
	// it may still make through its Querier, at a round trip each.
	Prepare(b *pgx.Batch, batch Batch)
	// Flush queues the writes the rules made into the round trip that commits.
	Flush(b *pgx.Batch) error
	// Committed is called after the commit, never after a rollback: to tell watchers what
	// changed.
	Committed()
}

// Batch is what a store reads ahead for: every event of a batch, fresh or not, and their
// orders, canonical, sorted and distinct.
type Batch struct {
	OrderIDs []string
	Events   []rules.Message
}

// Runner runs the rules of one consumer service in units of work on its database.
type Runner[S any] struct {
	reg   *rules.Registry[S]
	pool  *pgxpool.Pool
	relay *outbox.Relay
	log   *slog.Logger
	bind  func(database.Querier) (S, Tx)

	mu      sync.Mutex
	leading bool             // a unit of work runs, and its caller will hand over to pending[0]
	pending []*submission[S] // batches waiting for the next unit of work, in arrival order
}

// New returns the runner of reg's rules on pool; relay receives what each commit wrote to the
// outbox. bind returns the service's store bound to a transaction: the store the rules see (S)
// and the runner drives (Tx). It panics when what bind returns is not an S, a wiring mistake
// better found at start than at the first event.
func New[S any, T Tx](reg *rules.Registry[S], pool *pgxpool.Pool, relay *outbox.Relay, log *slog.Logger, bind func(tx database.Querier) T) *Runner[S] {
	if probe := bind(nil); !isA[S](probe) {
		panic(fmt.Sprintf("unitofwork: the store %T is not the %T the rules of %s take", probe, new(S), reg.Name()))
	}
	return &Runner[S]{reg: reg, pool: pool, relay: relay, log: log, bind: func(tx database.Querier) (S, Tx) {
		t := bind(tx)
		return any(t).(S), t
	}}
}

// Handlers returns the broker handler of each of the service's subscriptions in the catalog.
// It fails when the rules do not match them (rules.Registry.Handlers).
func (r *Runner[S]) Handlers() (map[catalog.Subscription]broker.Handler, error) {
	rs, err := r.reg.Handlers()
	if err != nil {
		return nil, err
	}
	handlers := make(map[catalog.Subscription]broker.Handler, len(rs))
	for sub, h := range rs {
		handlers[sub] = r.handler(sub.Queue(), h)
	}
	return handlers, nil
}

func isA[S any](v any) bool {
	_, ok := v.(S)
	return ok
}

// event is a decoded delivery with its queue, its rule, the batch it came in and the span
// handling it.
type event[S any] struct {
	rules.Envelope
	queue string
	rule  *rules.Handler[S]
	batch *submission[S]
	trace trace.SpanContext // invalid when untraced
}

// eventError is an error of one event's rule: a refusal for good (permanent) or a failure.
type eventError struct {
	queue, eventID string
	err            error
}

func (e *eventError) Error() string { return fmt.Sprintf("event %s: %v", e.eventID, e.err) }
func (e *eventError) Unwrap() error { return e.err }

// handler is the broker handler of one queue.
func (r *Runner[S]) handler(queue string, h *rules.Handler[S]) broker.Handler {
	log := r.log.With("queue", queue)
	return func(ctx context.Context, batch []amqp.Delivery) (err error) {
		start := time.Now()
		rejected := broker.Rejected{}
		// Each delivery's handling is a span of its own message's trace; nil while untraced.
		var spans []trace.Span
		defer func() {
			for i, span := range spans {
				if r, bad := rejected[i]; bad {
					broker.EndSpan(span, fmt.Errorf("rejected: %w", r))
				} else {
					broker.EndSpan(span, err)
				}
			}
		}()
		indexOf := map[string]int{} // event id → its first delivery in the batch
		sub := &submission[S]{done: make(chan bool, 1)}
		for i, d := range batch {
			var sc trace.SpanContext
			if span := broker.StartHandle(ctx, queue, d); span != nil {
				if spans == nil {
					spans = make([]trace.Span, len(batch))
				}
				spans[i], sc = span, span.SpanContext()
			}
			if d.Type != h.MessageType {
				rejected[i] = fmt.Errorf("message type %q on %s, want %q", d.Type, queue, h.MessageType)
				continue
			}
			env, err := h.Decode(d.Body)
			if err != nil {
				rejected[i] = err
				continue
			}
			if _, repeat := indexOf[env.ID]; repeat {
				continue // a repeat within the batch: acked with the first
			}
			indexOf[env.ID] = i
			sub.events = append(sub.events, event[S]{Envelope: env, queue: queue, rule: h, batch: sub, trace: sc})
		}
		if len(sub.events) > 0 {
			r.submit(ctx, sub)
			if sub.err != nil {
				return sub.err
			}
			for id, err := range sub.rejected {
				rejected[indexOf[id]] = err
			}
		}
		log.DebugContext(ctx, "batch handled", "events", len(batch), "rejected", len(rejected),
			"ms", time.Since(start).Milliseconds())
		if len(rejected) > 0 {
			return rejected
		}
		return nil
	}
}

// submission is one queue's batch of events on its way through a unit of work.
type submission[S any] struct {
	events []event[S]
	// The outcome: nil, or the error that undid the batch's effects; the events refused for
	// good, by id, the others having taken effect.
	err      error
	rejected map[string]error
	// done receives true when this batch's caller is to run the next unit of work, false once
	// another's has settled the outcome.
	done chan bool
}

// submit applies sub's events in a unit of work and settles its outcome. A service's queues
// are consumed side by side, so while one of its units of work runs, the batches of its other
// queues wait for the next, and share it: under load the service makes one transaction where
// it would make one per queue, and never more than one at a time per replica. No goroutine is
// added: the caller whose batch finds none running runs it, and hands over to the first left
// waiting, whose caller wakes for its outcome anyway.
func (r *Runner[S]) submit(ctx context.Context, sub *submission[S]) {
	r.mu.Lock()
	r.pending = append(r.pending, sub)
	wait := r.leading
	r.leading = true
	r.mu.Unlock()
	if wait && !<-sub.done {
		return
	}
	r.mu.Lock()
	group := r.pending
	r.pending = nil
	r.mu.Unlock()
	defer r.settle(sub, group)
	r.apply(ctx, group)
}

// settle wakes the callers of group's other batches with their outcomes, then hands over to
// the first batch left waiting, if any. Deferred by the caller that ran group, so that a panic
// outside the rules (a store's writes, say) fails every batch of the group and still hands
// over, rather than leaving the service's other queues waiting for good; the panic goes on
// up the caller's stack (broker.Recoverer).
func (r *Runner[S]) settle(sub *submission[S], group []*submission[S]) {
	p := recover()
	if p != nil {
		r.log.Error("unit of work panicked", "panic", p, "batches", len(group), "stack", string(debug.Stack()))
	}
	for _, s := range group {
		if p != nil {
			s.err = fmt.Errorf("unit of work panicked: %v", p)
		}
		if s != sub {
			s.done <- false
		}
	}
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.leading = false
	} else {
		r.pending[0].done <- true // buffered: never blocks under the lock
	}
	r.mu.Unlock()
	if p != nil {
		panic(p)
	}
}

// apply applies the events of group, batches of one or several queues, in one transaction, and
// settles each batch's outcome. An event its rule refuses for good is left out and the rest
// applied again. An event whose rule fails otherwise fails its own batch only, the others
// being applied again without it; any other failure, of the database most often, fails them all.
func (r *Runner[S]) apply(ctx context.Context, group []*submission[S]) {
	var events []event[S]
	for _, s := range group {
		events = append(events, s.events...)
	}
	for len(events) > 0 {
		published, err := r.attempt(ctx, events, time.Now())
		var bad *eventError
		if !errors.As(err, &bad) {
			if err != nil {
				failRest(group, err)
				return
			}
			unitEvents.WithLabelValues(r.reg.Name()).Observe(float64(len(events)))
			r.log.DebugContext(ctx, "unit of work committed", "events", len(events), "batches", len(group), "published", published)
			return
		}
		s := events[slices.IndexFunc(events, func(ev event[S]) bool { return ev.queue == bad.queue && ev.ID == bad.eventID })].batch
		if failure.IsPermanent(bad.err) {
			if s.rejected == nil {
				s.rejected = map[string]error{}
			}
			s.rejected[bad.eventID] = bad.err
			events = slices.DeleteFunc(events, func(ev event[S]) bool { return ev.queue == bad.queue && ev.ID == bad.eventID })
			continue
		}
		if len(group) == 1 || failure.IsTransient(bad.err) {
			failRest(group, err)
			return
		}
		s.err = err
		events = slices.DeleteFunc(events, func(ev event[S]) bool { return ev.batch == s })
	}
}

// failRest makes err the outcome of every batch of group that has none yet.
func failRest[S any](group []*submission[S], err error) {
	for _, s := range group {
		if s.err == nil {
			s.err = err
		}
	}
}

// attempt runs one transaction for events, whose unit of work began at began. Its BEGIN goes to
// PostgreSQL with the order locks, the inbox claim and the store's reads; its COMMIT with the
// store's writes and the outbox: two round trips besides the reads a store did not prepare,
// where a pgx.Tx would take four besides every statement. An error of one event's rule is an
// *eventError.
func (r *Runner[S]) attempt(ctx context.Context, events []event[S], began time.Time) (published int, err error) {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("acquire a connection: %w", err)
	}
	defer release(ctx, conn)
	batch := Batch{Events: make([]rules.Message, len(events))}
	ids := map[string][]string{} // event ids by queue
	for i, ev := range events {
		ids[ev.queue] = append(ids[ev.queue], ev.ID)
		batch.OrderIDs = append(batch.OrderIDs, ev.OrderID)
		batch.Events[i] = ev.Msg
	}
	batch.OrderIDs = slices.Compact(slices.Sorted(slices.Values(batch.OrderIDs)))
	claimed := make(map[string]map[string]bool, len(ids))
	begin := &pgx.Batch{}
	begin.Queue("begin")
	lockOrders(begin, batch.OrderIDs)
	for _, queue := range slices.Sorted(maps.Keys(ids)) {
		// Sorted, so that batches sharing orders or redelivered events wait for each other,
		// never deadlock.
		slices.Sort(ids[queue])
		claimed[queue] = make(map[string]bool, len(ids[queue]))
		inbox.QueueClaim(begin, queue, ids[queue], claimed[queue])
	}
	store, tx := r.bind(conn)
	tx.Prepare(begin, batch)
	if err := conn.SendBatch(ctx, begin).Close(); err != nil {
		return 0, fmt.Errorf("begin and claim events: %w", err)
	}
	var out []outbox.Event
	var applied []event[S]
	for _, ev := range events {
		if !claimed[ev.queue][ev.ID] {
			continue
		}
		caused, err := applyRule(ctx, store, ev)
		if err != nil {
			return 0, &eventError{queue: ev.queue, eventID: ev.ID, err: err}
		}
		for i := range caused {
			if !caused[i].Trace.IsValid() {
				caused[i].Trace = ev.trace // an order's saga is one trace
			}
		}
		out = append(out, caused...)
		applied = append(applied, ev)
	}
	end := &pgx.Batch{}
	if len(applied) > 0 {
		if err := tx.Flush(end); err != nil {
			return 0, err
		}
	}
	var rows []outbox.Row
	if err := outbox.QueueAdd(end, &rows, out...); err != nil {
		return 0, err
	}
	if err := commit(ctx, conn, end); err != nil {
		return 0, err
	}
	if len(applied) == 0 {
		return 0, nil
	}
	r.relay.Publish(rows)
	tx.Committed()
	// Both measured on the events applied, so that a stage less its wait is its unit of work.
	now := time.Now()
	for _, ev := range applied {
		if at := ev.Msg.GetOccurTime(); at != nil {
			stageLatency.WithLabelValues(ev.queue).Observe(now.Sub(at.AsTime()).Seconds())
			stageWait.WithLabelValues(ev.queue).Observe(began.Sub(at.AsTime()).Seconds())
		}
	}
	return len(rows), nil
}

// applyRule runs ev's rule through store. A rule that panics fails its event, not the unit of
// work of every batch that shares it.
func applyRule[S any](ctx context.Context, store S, ev event[S]) (caused []outbox.Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rule panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return ev.rule.Apply(ctx, store, ev.Envelope)
}

// lockOrders queues the transaction-scoped advisory locks of orders, in key order: every rule
// of the service that touches an order holds its lock from the start of its transaction to the
// end, so that what a store reads ahead for an order cannot change under it, and rows an order
// does not have yet cannot be inserted by two transactions at once.
func lockOrders(b *pgx.Batch, orderIDs []string) {
	keys := make([]int64, len(orderIDs))
	for i, id := range orderIDs {
		h := fnv.New64a()
		h.Write([]byte(id))
		keys[i] = int64(h.Sum64())
	}
	slices.Sort(keys)
	b.Queue(`SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS l(k, n) ORDER BY n`, keys)
}

// commit sends batch b, then COMMIT, in one round trip.
func commit(ctx context.Context, conn *pgxpool.Conn, b *pgx.Batch) error {
	b.Queue("commit").Exec(func(tag pgconn.CommandTag) error {
		if tag.String() == "ROLLBACK" { // the transaction had failed already
			return pgx.ErrTxCommitRollback
		}
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// release rolls back what a failed attempt left open, so that the pool keeps the connection
// rather than closing it, and returns it to the pool.
func release(ctx context.Context, conn *pgxpool.Conn) {
	if pg := conn.Conn().PgConn(); !pg.IsClosed() && pg.TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = conn.Exec(ctx, "rollback") // on failure the pool closes the connection
		cancel()
	}
	conn.Release()
}

// Migrations returns every migration a consumer service's database needs, in order: its own,
// the *.sql files of fsys's migrations directory (in goose's default version table), then the
// inbox's and the outbox's, which its units of work write to.
func Migrations(fsys fs.FS) []database.Migrations {
	return []database.Migrations{
		{Table: "goose_db_version", FS: database.Sub(fsys, "migrations")},
		inbox.Migrations,
		outbox.Migrations,
	}
}
