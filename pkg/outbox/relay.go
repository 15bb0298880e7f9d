package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ordersaga/ordersaga/pkg/broker"
)

var (
	backlog = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "ordersaga_outbox_backlog",
		Help: "Events in the outbox: not yet confirmed by the broker, or confirmed and waiting (at most a second) to be deleted.",
	})
	oldestAge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "ordersaga_outbox_oldest_age_seconds",
		Help: "Age of the oldest event in the outbox.",
	})
	relayLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ordersaga_outbox_relay_seconds",
		Help:    "Time from an event being written to the outbox to its publish, for events handed to the relay at their commit, by routing key.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"routing_key"})
	dropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "ordersaga_outbox_handoffs_dropped_total",
		Help: "Committed events the relay had no room for in memory, left to its poll.",
	})
)

// Relay publishes the outbox.
//
// The code that commits events hands them over at once (Publish) and the relay publishes them
// from memory, several batches in flight, and deletes what the broker confirmed in one
// statement per round. It holds no transaction and no row lock while it waits for the broker.
// A poll is the safety net for rows that no hand-over announced (a replica that crashed after
// its commit, a failed publish, a hand-over with no room): it takes rows whose publish_after
// passed and leases them by moving publish_after forward, so that replicas share the work
// without a lock held across the network. Anything not confirmed and routed is published
// again; consumers' inboxes absorb the repeats.
type Relay struct {
	pool *pgxpool.Pool
	conn *broker.Conn
	pub  *broker.Publisher
	log  *slog.Logger

	handoff  chan []Row
	inFlight chan *flight
	failed   atomic.Pointer[error] // why the last round of publishes failed; nil once one succeeds

	BatchSize    int           // most messages in one publish round (default 512)
	PollInterval time.Duration // safety-net poll (default 1s)
	Lease        time.Duration // how long a polled row is left to its poller (default 15s)
}

// flight is one round of messages sent and waiting for confirms.
type flight struct {
	rows    []Row
	pending *broker.Pending
}

// NewRelay returns a relay publishing pool's outbox on conn.
func NewRelay(pool *pgxpool.Pool, conn *broker.Conn, log *slog.Logger) *Relay {
	return &Relay{
		pool: pool, conn: conn, pub: broker.NewPublisher(conn), log: log,
		// Bounded: a broker that blocks publishers must not grow memory without end.
		handoff:      make(chan []Row, 1024),
		inFlight:     make(chan *flight, 8),
		BatchSize:    512,
		PollInterval: time.Second,
		Lease:        15 * time.Second,
	}
}

// Publish hands rows committed to the outbox to the relay. Call it after the commit. It never
// blocks: when the relay has no room, the rows are left to the poll.
func (r *Relay) Publish(rows []Row) {
	if len(rows) == 0 {
		return
	}
	select {
	case r.handoff <- rows:
	default:
		dropped.Add(float64(len(rows)))
	}
}

// Run publishes until ctx ends, then makes a last, bounded attempt to flush what it holds.
func (r *Relay) Run(ctx context.Context) error {
	defer r.pub.Close()
	// The confirm loop outlives ctx by a bound, to settle what is in flight at shutdown.
	confirmCtx, stopConfirming := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConfirming()
	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		r.confirm(confirmCtx)
	}()
	defer func() {
		close(r.inFlight)
		t := time.AfterFunc(5*time.Second, stopConfirming)
		defer t.Stop()
		<-confirmed
	}()

	poll := time.NewTicker(r.PollInterval)
	defer poll.Stop()
	measure := time.NewTicker(5 * time.Second)
	defer measure.Stop()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	for {
		var err error
		select {
		case <-ctx.Done():
			r.flushHandoffs()
			return nil
		case rows := <-r.handoff:
			rows = r.gather(rows)
			if err = r.send(ctx, rows); err == nil {
				observeRelay(rows)
			}
		case <-poll.C:
			err = r.poll(ctx)
		case <-measure.C:
			r.measure(ctx)
		}
		if err == nil {
			b.Reset()
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		r.failed.Store(&err)
		r.log.WarnContext(ctx, "outbox relay failed, retrying", "err", err)
		select {
		case <-time.After(b.NextBackOff()):
		case <-ctx.Done():
		}
	}
}

// gather adds whatever else was handed over, up to BatchSize, to rows. It never appends into
// the caller's slice: that memory is the caller's.
func (r *Relay) gather(rows []Row) []Row {
	rows = slices.Clip(rows)
	for len(rows) < r.BatchSize {
		select {
		case more := <-r.handoff:
			rows = append(rows, more...)
		default:
			return rows
		}
	}
	return rows
}

// send publishes rows and queues them for the confirm loop. Rows not sent stay in the outbox
// for the poll.
func (r *Relay) send(ctx context.Context, rows []Row) error {
	msgs := make([]broker.Message, len(rows))
	for i, row := range rows {
		msgs[i] = row.Msg
	}
	pending, err := r.pub.Send(ctx, msgs)
	r.inFlight <- &flight{rows: rows, pending: pending}
	return err
}

// observeRelay measures how long rows handed over at their commit took to be published.
func observeRelay(rows []Row) {
	now := time.Now()
	for _, row := range rows {
		relayLatency.WithLabelValues(row.Msg.RoutingKey).Observe(now.Sub(row.Msg.Timestamp).Seconds())
	}
}

// poll publishes the rows nobody handed over, leasing them first.
func (r *Relay) poll(ctx context.Context) error {
	for {
		rows, err := r.lease(ctx)
		if err != nil || len(rows) == 0 {
			return err
		}
		if err := r.send(ctx, rows); err != nil {
			// Not sent: due again now rather than when the lease ends.
			r.release(ctx, rows)
			return err
		}
		if len(rows) < r.BatchSize {
			return nil
		}
	}
}

// lease takes up to BatchSize rows due for publishing and moves their publish_after past the
// lease, in one statement that commits at once.
func (r *Relay) lease(ctx context.Context) ([]Row, error) {
	rows, err := r.pool.Query(ctx, `
		UPDATE outbox SET publish_after = now() + $2::interval
		WHERE id IN (SELECT id FROM outbox WHERE publish_after <= now()
			ORDER BY publish_after LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING id, event_id::text, exchange, routing_key, message_type, correlation_id, body, created_at, traceparent, tracestate`,
		r.BatchSize, r.Lease)
	if err != nil {
		return nil, fmt.Errorf("lease outbox: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var out Row
		var traceparent, tracestate *string
		m := &out.Msg
		err := row.Scan(&out.ID, &m.MessageID, &m.Exchange, &m.RoutingKey, &m.Type, &m.CorrelationID, &m.Body, &m.Timestamp, &traceparent, &tracestate)
		withTraceContext(m, traceparent, tracestate)
		return out, err
	})
}

// release ends the lease of rows that could not be sent.
func (r *Relay) release(ctx context.Context, rows []Row) {
	ids := make([]int64, len(rows))
	for i, row := range rows {
		ids[i] = row.ID
	}
	if _, err := r.pool.Exec(ctx, `UPDATE outbox SET publish_after = now() WHERE id = ANY($1)`, ids); err != nil {
		r.log.WarnContext(ctx, "releasing outbox lease failed; rows wait for the lease to end", "err", err)
	}
}

// deleteEvery is how long confirmed rows may wait to be deleted together: one statement for
// many rounds of confirms, so that at low load the deletes do not cost a transaction per
// event. They are not published again meanwhile: the poll takes only rows whose
// publish_after, five seconds after their commit, has passed.
const deleteEvery = time.Second

// confirm waits for each round's confirms in order and deletes the confirmed rows, many rounds
// at a time. It ends when inFlight is closed and drained.
func (r *Relay) confirm(ctx context.Context) {
	var done []int64
	var due <-chan time.Time
	for {
		select {
		case f, ok := <-r.inFlight:
			if !ok {
				r.delete(ctx, done)
				return
			}
			done = append(done, r.settle(ctx, f)...)
			if len(done) >= 4*r.BatchSize {
				r.delete(ctx, done)
				done, due = nil, nil
			} else if due == nil && len(done) > 0 {
				due = time.After(deleteEvery)
			}
		case <-due:
			r.delete(ctx, done)
			done, due = nil, nil
		}
	}
}

// settle waits for one round's confirms, bounded so that a broker that stopped answering
// cannot hold the relay; what is not confirmed by then stays for the poll.
func (r *Relay) settle(ctx context.Context, f *flight) []int64 {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok := f.pending.Wait(ctx)
	var done []int64
	var again []Row
	for i, row := range f.rows {
		if ok[i] {
			done = append(done, row.ID)
		} else {
			again = append(again, row)
		}
	}
	if err := f.pending.Err(); err != nil {
		r.failed.Store(&err)
		r.log.Warn("outbox events not confirmed, left for the poll", "err", err, "confirmed", len(done), "sent", len(f.rows))
		// An exchange or queue deleted under the service makes events unroutable or closes
		// the channel: declare the topology again before the poll retries them.
		if err := r.conn.Redeclare(ctx); err != nil {
			r.log.Warn("declaring the topology again failed", "err", err)
		}
	}
	if len(again) == 0 {
		r.failed.Store(nil)
	} else {
		// Due at the next poll, not when their lease (or their commit's grace) ends: a broker
		// that answered no is answered again within a second.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		r.release(rctx, again)
	}
	return done
}

// delete removes confirmed rows. Should it fail, the rows are published again later: a
// duplicate, which the consumers' inboxes absorb.
//
// The delete does not wait for its commit to reach the disk (synchronous_commit off, for this
// transaction only): a crash can only undo it, and then the rows are published again — the same
// duplicate. It spares a disk flush per round of confirms.
func (r *Relay) delete(ctx context.Context, ids []int64) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(`DELETE FROM outbox WHERE id = ANY($1)`, ids)
	b.Queue("COMMIT")
	if err := r.pool.SendBatch(ctx, b).Close(); err != nil {
		r.log.Warn("deleting published outbox rows failed; they will be published again", "err", err, "rows", len(ids))
	}
}

// flushHandoffs publishes, within a bound, what was handed over but not sent yet at shutdown.
// Whatever is left is published by the poll of the next start or of another replica.
func (r *Relay) flushHandoffs() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case rows := <-r.handoff:
			if err := r.send(ctx, r.gather(rows)); err != nil {
				r.log.Warn("outbox not fully flushed at shutdown; it is published by the next poll", "err", err)
				return
			}
		default:
			return
		}
	}
}

// Check reports, as a readiness check, whether the relay can publish: an error while its last
// round of publishes failed (refused rights, a missing exchange, a channel the broker closed),
// until a round is confirmed whole. A relay that cannot publish leaves the saga stuck in the
// outbox however healthy the connections look.
func (r *Relay) Check(context.Context) error {
	if err := r.failed.Load(); err != nil {
		return fmt.Errorf("publishing fails: %w", *err)
	}
	return nil
}

func (r *Relay) measure(ctx context.Context) {
	var n int64
	var age float64
	err := r.pool.QueryRow(ctx, `
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox`).Scan(&n, &age)
	if err != nil {
		return
	}
	backlog.Set(float64(n))
	oldestAge.Set(age)
}
