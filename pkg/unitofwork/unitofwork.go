// Package unitofwork applies a batch of events as one unit of work, the same way in every
// service: decode and validate each delivery, canonical ids, in-batch repeats dropped, the
// inbox claim, the service's domain rule, the outbox write, the commit, and the hand-over of
// what was written to the outbox relay. A service supplies only its rule and its SQL.
package unitofwork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
)

// Message is what every event of the catalog is: a proto message with an event id and the id
// of its order.
type Message interface {
	proto.Message
	GetEventId() string
	GetOrderId() string
	GetOccurTime() *timestamppb.Timestamp
}

// stageLatency is how long events take from occurring to having taken effect: the saga's
// per-stage latency, by queue.
var stageLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "ordersaga_stage_latency_seconds",
	Help:    "Time from an event occurring to its effect being committed, by queue.",
	Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
}, []string{"queue"})

// Event is one decoded event, its ids in canonical (lower-case) form.
type Event[T Message] struct {
	ID      string
	OrderID string
	Msg     T
}

// Rule applies a service's domain rule to the fresh events of a batch — each seen for the first
// time by this queue, none twice — through store, which is bound to the batch's transaction. It
// returns the events to publish. An event the rule can never apply is refused with Reject: the
// batch is applied again without it, and it goes to the dead-letter queue. Any other error
// undoes the whole batch.
type Rule[S any, T Message] func(ctx context.Context, store S, events []Event[T]) ([]outbox.Event, error)

type rejection struct {
	eventID string
	err     error
}

func (r *rejection) Error() string { return fmt.Sprintf("event %s: %v", r.eventID, r.err) }
func (r *rejection) Unwrap() error { return r.err }

// Reject refuses one event of a batch for good, for err.
func Reject(eventID string, err error) error { return &rejection{eventID: eventID, err: err} }

// Committer is a store that acts once its transaction committed, e.g. to tell watchers what
// changed: the unit of work calls Committed after the commit, never after a rollback.
type Committer interface {
	Committed()
}

// Preparer is a store that reads ahead: Prepare queues the reads its rules make for the orders
// of a batch into the statements that begin the transaction and claim the events, so that they
// cost no round trip of their own. It sees the order of every event of the batch, fresh or not.
type Preparer interface {
	Prepare(b *pgx.Batch, orderIDs []string)
}

// Service holds the rules of one consumer service, one per routing key it consumes, and runs
// them in units of work on its database. S is the service's store bound to a transaction.
type Service[S any] struct {
	name  string
	pool  *pgxpool.Pool
	relay *outbox.Relay
	log   *slog.Logger
	bind  func(database.Querier) S
	rules map[string]*entry[S]
}

// entry is one routing key's decoder and rule, with the message type erased.
type entry[S any] struct {
	messageType string
	decode      func(body []byte) (envelope, error)
	apply       func(ctx context.Context, store S, events []envelope) ([]outbox.Event, error)
}

type envelope struct {
	id, orderID string
	msg         Message
	trace       trace.SpanContext // of the span handling its delivery; invalid when untraced
}

// New returns the units of work of the consumer service name (as in the catalog) on pool;
// bind gives the rules their store inside a transaction; relay receives what each commit
// wrote to the outbox.
func New[S any](name string, pool *pgxpool.Pool, relay *outbox.Relay, log *slog.Logger, bind func(database.Querier) S) *Service[S] {
	return &Service[S]{name: name, pool: pool, relay: relay, log: log, bind: bind, rules: map[string]*entry[S]{}}
}

// On registers the rule for routing key. validate, when not nil, checks each event before any
// transaction: an event it refuses goes to the dead-letter queue.
func On[M any, T interface {
	*M
	Message
}, S any](svc *Service[S], routingKey string, validate func(T) error, rule Rule[S, T]) {
	messageType := string(T(new(M)).ProtoReflect().Descriptor().FullName())
	if want := catalog.MessageType(routingKey); want != messageType {
		panic(fmt.Sprintf("unitofwork: %s carries %q, not %q", routingKey, want, messageType))
	}
	svc.rules[routingKey] = &entry[S]{
		messageType: messageType,
		decode: func(body []byte) (envelope, error) {
			msg := T(new(M))
			if err := proto.Unmarshal(body, msg); err != nil {
				return envelope{}, fmt.Errorf("decode %s: %w", messageType, err)
			}
			id, err := uuid.Parse(msg.GetEventId())
			if err != nil {
				return envelope{}, fmt.Errorf("%s: event_id: %w", messageType, err)
			}
			order, err := uuid.Parse(msg.GetOrderId())
			if err != nil {
				return envelope{}, fmt.Errorf("%s %s: order_id: %w", messageType, id, err)
			}
			if validate != nil {
				if err := validate(msg); err != nil {
					return envelope{}, fmt.Errorf("%s %s: %w", messageType, id, err)
				}
			}
			return envelope{id: id.String(), orderID: order.String(), msg: msg}, nil
		},
		apply: func(ctx context.Context, store S, envs []envelope) ([]outbox.Event, error) {
			events := make([]Event[T], len(envs))
			for i, e := range envs {
				events[i] = Event[T]{ID: e.id, OrderID: e.orderID, Msg: e.msg.(T)}
			}
			return rule(ctx, store, events)
		},
	}
}

// Handlers returns the broker handler of each of the service's subscriptions in the catalog.
// It fails when the service has no rule for one of them, or a rule for an event it does not
// consume.
func (s *Service[S]) Handlers() (map[catalog.Subscription]broker.Handler, error) {
	handlers := map[catalog.Subscription]broker.Handler{}
	for _, sub := range catalog.SubscriptionsOf(s.name) {
		e, ok := s.rules[sub.RoutingKey]
		if !ok {
			return nil, fmt.Errorf("%s consumes %s but has no rule for it", s.name, sub.RoutingKey)
		}
		handlers[sub] = s.handler(sub.Queue(), e)
	}
	if len(handlers) != len(s.rules) {
		return nil, fmt.Errorf("%s has rules for events it does not consume", s.name)
	}
	return handlers, nil
}

// Apply decodes one event as a delivery of routingKey would be and applies its rule through
// store, without inbox or transaction: for running the saga's rules over a fake bus in tests.
func (s *Service[S]) Apply(ctx context.Context, store S, routingKey string, body []byte) ([]outbox.Event, error) {
	e, ok := s.rules[routingKey]
	if !ok {
		return nil, fmt.Errorf("%s has no rule for %s", s.name, routingKey)
	}
	env, err := e.decode(body)
	if err != nil {
		return nil, failure.Permanent(err)
	}
	return applyOne(ctx, store, e, env)
}

// applyOne applies one decoded event's rule through store, a refusal being permanent.
func applyOne[S any](ctx context.Context, store S, e *entry[S], env envelope) ([]outbox.Event, error) {
	out, err := e.apply(ctx, store, []envelope{env})
	var rej *rejection
	if errors.As(err, &rej) {
		return nil, failure.Permanent(rej)
	}
	return out, err
}

// handler is the broker handler of one queue.
func (s *Service[S]) handler(queue string, e *entry[S]) broker.Handler {
	log := s.log.With("queue", queue)
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
		var events []envelope
		for i, d := range batch {
			var sc trace.SpanContext
			if span := broker.StartHandle(ctx, queue, d); span != nil {
				if spans == nil {
					spans = make([]trace.Span, len(batch))
				}
				spans[i], sc = span, span.SpanContext()
			}
			if d.Type != e.messageType {
				rejected[i] = fmt.Errorf("message type %q on %s, want %q", d.Type, queue, e.messageType)
				continue
			}
			env, err := e.decode(d.Body)
			if err != nil {
				rejected[i] = err
				continue
			}
			env.trace = sc
			if _, repeat := indexOf[env.id]; repeat {
				continue // a repeat within the batch: acked with the first
			}
			indexOf[env.id] = i
			events = append(events, env)
		}
		var published, fresh int
		for len(events) > 0 {
			var err error
			published, fresh, err = s.attempt(ctx, queue, e, events)
			var rej *rejection
			if !errors.As(err, &rej) {
				if err != nil {
					return err
				}
				break
			}
			rejected[indexOf[rej.eventID]] = rej.err
			events = slices.DeleteFunc(events, func(env envelope) bool { return env.id == rej.eventID })
		}
		log.InfoContext(ctx, "batch handled", "events", len(batch), "fresh", fresh, "published", published,
			"rejected", len(rejected), "ms", time.Since(start).Milliseconds())
		if len(rejected) > 0 {
			return rejected
		}
		return nil
	}
}

// attempt runs one transaction: claim, rule, outbox, commit, hand-over. The transaction's
// BEGIN goes to PostgreSQL with the inbox claim and the reads a Preparer store queues, and its COMMIT with the rule's deferred writes
// and the outbox write: two round trips besides the rule's reads, where a pgx.Tx would take
// four besides every statement of the rule.
func (s *Service[S]) attempt(ctx context.Context, queue string, e *entry[S], events []envelope) (published, fresh int, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("acquire a connection: %w", err)
	}
	defer release(ctx, conn)
	ids := make([]string, len(events))
	for i, env := range events {
		ids[i] = env.id
	}
	// Sorted, so that batches sharing redelivered events wait for each other, never deadlock.
	slices.Sort(ids)
	claimed := make(map[string]bool, len(ids))
	begin := &pgx.Batch{}
	begin.Queue("begin")
	inbox.QueueClaim(begin, queue, ids, claimed)
	t := &transaction{Conn: conn}
	store := s.bind(t)
	if p, ok := any(store).(Preparer); ok {
		orders := make([]string, len(events))
		for i, env := range events {
			orders[i] = env.orderID
		}
		p.Prepare(begin, orders)
	}
	if err := conn.SendBatch(ctx, begin).Close(); err != nil {
		return 0, 0, fmt.Errorf("begin and claim events: %w", err)
	}
	todo := slices.DeleteFunc(slices.Clone(events), func(env envelope) bool { return !claimed[env.id] })
	if len(todo) == 0 {
		return 0, 0, commit(ctx, conn, &pgx.Batch{})
	}
	out, err := e.apply(ctx, store, todo)
	if err != nil {
		return 0, 0, err
	}
	continueTraces(out, todo)
	var rows []outbox.Row
	end := &pgx.Batch{QueuedQueries: t.deferred}
	if err := outbox.QueueAdd(end, &rows, out...); err != nil {
		return 0, 0, err
	}
	if err := commit(ctx, conn, end); err != nil {
		return 0, 0, err
	}
	s.relay.Publish(rows)
	if c, ok := any(store).(Committer); ok {
		c.Committed()
	}
	stage := stageLatency.WithLabelValues(queue)
	now := time.Now()
	for _, env := range todo {
		if at := env.msg.GetOccurTime(); at != nil {
			stage.Observe(now.Sub(at.AsTime()).Seconds())
		}
	}
	return len(rows), len(todo), nil
}

// transaction is an attempt's transaction as its rule sees it: statements run on the connection
// at once, and writes the rule defers (database.Write) go with the COMMIT.
type transaction struct {
	*pgxpool.Conn
	deferred []*pgx.QueuedQuery
}

var _ database.Deferrer = (*transaction)(nil)

// Defer implements database.Deferrer.
func (t *transaction) Defer(b *pgx.Batch) { t.deferred = append(t.deferred, b.QueuedQueries...) }

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

// continueTraces makes each outgoing event that carries no trace context continue the trace of
// the event of its order that caused it, so that an order's saga is one trace.
func continueTraces(out []outbox.Event, causes []envelope) {
	if !slices.ContainsFunc(causes, func(env envelope) bool { return env.trace.IsValid() }) {
		return // untraced: nothing to carry
	}
	var byOrder map[string]trace.SpanContext
	for i := range out {
		if out[i].Trace.IsValid() {
			continue
		}
		if byOrder == nil {
			byOrder = make(map[string]trace.SpanContext, len(causes))
			for _, env := range causes {
				if _, seen := byOrder[env.orderID]; !seen && env.trace.IsValid() {
					byOrder[env.orderID] = env.trace
				}
			}
		}
		out[i].Trace = byOrder[out[i].OrderID]
	}
}
