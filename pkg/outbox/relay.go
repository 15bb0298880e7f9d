package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/broker"
)

var (
	backlog = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "ordersaga_outbox_backlog",
		Help: "Events in the outbox not yet confirmed by the broker.",
	})
	oldestAge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "ordersaga_outbox_oldest_age_seconds",
		Help: "Age of the oldest event in the outbox.",
	})
)

// Relay publishes the outbox. The code that commits events wakes it at once (Wake, WakeAfter),
// and it polls as a safety net for rows that no wake-up announced: those of a replica that
// crashed after its commit, or of a failed publish. Several replicas can run at once: each takes rows the others have not
// locked. A row is deleted only once the broker confirmed it and routed it to a queue; anything
// else is published again, and consumers' inboxes absorb the repeats.
type Relay struct {
	pool *pgxpool.Pool
	pub  *broker.Publisher
	log  *slog.Logger
	wake chan struct{}

	BatchSize    int           // rows per transaction (default 256)
	PollInterval time.Duration // safety-net poll (default 500ms)
}

// NewRelay returns a relay publishing pool's outbox on conn.
func NewRelay(pool *pgxpool.Pool, conn *broker.Conn, log *slog.Logger) *Relay {
	return &Relay{pool: pool, pub: broker.NewPublisher(conn), log: log, wake: make(chan struct{}, 1),
		BatchSize: 256, PollInterval: 500 * time.Millisecond}
}

// Wake tells the relay that events were committed. Call it after the commit. It never blocks.
//
// An in-process signal rather than NOTIFY: PostgreSQL serializes the commits of every
// transaction that notifies, server-wide, which would cap the whole saga's throughput.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// WakeAfter returns h, waking the relay after every batch that h committed.
func (r *Relay) WakeAfter(h broker.Handler) broker.Handler {
	return func(ctx context.Context, batch []amqp.Delivery) error {
		err := h(ctx, batch)
		if err == nil {
			r.Wake()
		}
		return err
	}
}

// Run publishes until ctx ends, then makes a last, bounded attempt to flush.
func (r *Relay) Run(ctx context.Context) error {
	defer r.pub.Close()
	poll := time.NewTicker(r.PollInterval)
	defer poll.Stop()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	for {
		if err := r.drain(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "outbox relay failed, retrying", "err", err)
			select {
			case <-time.After(b.NextBackOff()):
				continue
			case <-ctx.Done():
			}
		} else {
			b.Reset()
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := r.drain(fctx); err != nil {
				r.log.Warn("outbox not fully flushed at shutdown; it is published on next start", "err", err)
			}
			cancel()
			return nil
		case <-r.wake:
		case <-poll.C:
			r.measure(ctx)
		}
	}
}

// drain publishes batches until the outbox is empty of unlocked rows.
func (r *Relay) drain(ctx context.Context) error {
	for {
		n, err := r.flush(ctx)
		if err != nil {
			return err
		}
		if n < r.BatchSize {
			return nil
		}
	}
}

// flush publishes one batch and deletes what the broker confirmed. The rows stay locked while
// they are published so that another replica skips them.
func (r *Relay) flush(ctx context.Context) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `
		SELECT id, event_id::text, exchange, routing_key, message_type, correlation_id, body, created_at
		FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, r.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("select outbox: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (row2 row, err error) {
		err = row.Scan(&row2.id, &row2.eventID, &row2.exchange, &row2.routingKey, &row2.messageType,
			&row2.correlationID, &row2.body, &row2.createdAt)
		return row2, err
	})
	if err != nil {
		return 0, fmt.Errorf("select outbox: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	msgs := make([]broker.Message, len(batch))
	for i, row := range batch {
		msgs[i] = row.message()
	}
	ok, pubErr := r.pub.Publish(ctx, msgs)
	var done []int64
	for i, row := range batch {
		if ok[i] {
			done = append(done, row.id)
		} else if pubErr == nil {
			pubErr = fmt.Errorf("event %s (%s) not confirmed", row.eventID, row.routingKey)
		}
	}
	if len(done) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, done); err != nil {
			return 0, fmt.Errorf("delete outbox: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, fmt.Errorf("commit outbox: %w", err)
		}
	}
	return len(batch), pubErr
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
