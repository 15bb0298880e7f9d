package inbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// fill inserts n inbox entries processed at the given time and returns their ids.
func fill(t *testing.T, pool *pgxpool.Pool, n int, at time.Time) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	if _, err := pool.Exec(context.Background(), `
		INSERT INTO idempotency_keys (event_id, queue, processed_at)
		SELECT id, 'test.queue', $2 FROM unnest($1::text[]::uuid[]) AS id`, ids, at); err != nil {
		t.Fatalf("fill inbox: %v", err)
	}
	return ids
}

func count(t *testing.T, pool *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPruneDeletesOnlyWhatIsOlderThanTheCutoffInBatches(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "inbox_prune", inbox.Migrations)
	now := time.Now()
	fill(t, pool, 2500, now.Add(-2*time.Hour))
	fresh := fill(t, pool, 300, now.Add(-time.Minute))
	n, err := inbox.Prune(context.Background(), pool, now.Add(-time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2500 {
		t.Errorf("pruned %d, want 2500", n)
	}
	if left := count(t, pool, `true`); left != len(fresh) {
		t.Errorf("%d entries left, want the %d fresh ones", left, len(fresh))
	}
	if n, err := inbox.Prune(context.Background(), pool, now.Add(-time.Hour), 1000); err != nil || n != 0 {
		t.Errorf("second prune: %d, %v; want nothing left to do", n, err)
	}

	// A pruned event is forgotten: a copy arriving now would take effect again. That is why the
	// retention must outlast every redelivery.
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	old := uuid.NewString()
	claimed, err := inbox.Claim(context.Background(), tx, "test.queue", []string{old, fresh[0]})
	if err != nil {
		t.Fatal(err)
	}
	if !claimed[old] || claimed[fresh[0]] {
		t.Errorf("claimed %v: want the unknown event fresh and the retained one a duplicate", claimed)
	}

	// The deletes find their rows through the processed_at index.
	var valid bool
	if err := pool.QueryRow(context.Background(),
		`SELECT indisvalid FROM pg_index WHERE indexrelid = 'idempotency_keys_processed_at_idx'::regclass`).Scan(&valid); err != nil || !valid {
		t.Errorf("processed_at index: valid=%v, %v", valid, err)
	}
}

func TestPruneSkipsRowsLockedByAnotherReplica(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t, "inbox_prune_locked", inbox.Migrations)
	ctx := context.Background()
	ids := fill(t, pool, 5000, time.Now().Add(-2*time.Hour))

	// Another replica's prune has rows in hand: this one skips them instead of waiting.
	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `SELECT 1 FROM idempotency_keys WHERE event_id = ANY($1::uuid[]) FOR UPDATE`, ids[:10]); err != nil {
		t.Fatal(err)
	}
	// Two prunes at once share the rest, neither waiting for the other.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	got := make([]int64, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { got[i], errs[i] = inbox.Prune(pctx, pool, time.Now().Add(-time.Hour), 100) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
	}
	if got[0]+got[1] != 4990 {
		t.Errorf("pruned %d + %d, want 4990 in all", got[0], got[1])
	}
	if err := other.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if left := count(t, pool, `event_id = ANY($1::uuid[])`, ids[:10]); left != 10 {
		t.Errorf("%d of the 10 locked entries left, want 10", left)
	}
	if n, err := inbox.Prune(ctx, pool, time.Now().Add(-time.Hour), 100); err != nil || n != 10 {
		t.Errorf("prune after the lock: %d, %v; want 10", n, err)
	}
}
