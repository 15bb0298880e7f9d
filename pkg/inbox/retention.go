package inbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// PruneBatch is how many inbox entries one delete removes: small enough that each statement
// takes a few milliseconds and holds its row locks no longer.
const PruneBatch = 1000

var pruned = promauto.NewCounter(prometheus.CounterOpts{
	Name: "ordersaga_inbox_pruned_total",
	Help: "Inbox entries (idempotency_keys) deleted by the retention.",
})

// Prune deletes the inbox entries processed before cutoff, batch by batch, each batch a
// statement of its own, and returns how many it deleted. Entries another replica is deleting
// at the same time are skipped, not waited for, so two replicas pruning at once share the work.
func Prune(ctx context.Context, pool *pgxpool.Pool, cutoff time.Time, batch int) (int64, error) {
	var total int64
	for {
		tag, err := pool.Exec(ctx, `
			DELETE FROM idempotency_keys WHERE event_id IN (
				SELECT event_id FROM idempotency_keys
				WHERE processed_at < $1
				ORDER BY processed_at
				LIMIT $2
				FOR UPDATE SKIP LOCKED)`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("prune inbox: %w", err)
		}
		n := tag.RowsAffected()
		total += n
		pruned.Add(float64(n))
		if n < int64(batch) {
			return total, nil
		}
		// Let the handlers' claims have the disk between batches.
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// PruneInterval is how often Retain prunes for a retention: a quarter of it, at most every
// ten minutes, so that the inbox holds at most a quarter more than the retention asks for.
func PruneInterval(retention time.Duration) time.Duration {
	return min(retention/4, 10*time.Minute)
}

// Retain prunes the inbox of entries older than retention every PruneInterval until ctx ends.
// A failed prune is logged and tried again at the next tick: the inbox only grows meanwhile.
func Retain(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, retention time.Duration) error {
	t := time.NewTicker(PruneInterval(retention))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		began := time.Now()
		n, err := Prune(ctx, pool, began.Add(-retention), PruneBatch)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.WarnContext(ctx, "inbox retention failed, trying again later", "err", err, "deleted", n)
		case n > 0:
			log.InfoContext(ctx, "inbox pruned", "deleted", n, "retention", retention.String(),
				"ms", time.Since(began).Milliseconds())
		}
	}
}
