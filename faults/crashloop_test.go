//go:build faults

package faults

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// crashes is how often the crash loop kills payment-service with deliveries in hand: more than
// broker.FailureLimit, and more than the delivery limit of 10 the queues had while the broker's
// count of deliveries, which counts a consumer's death, decided what was poison. Against that
// limit, every event payment held (its prefetch, 256) was dead-lettered.
const crashes = 13

// TestFaultCrashLoop builds a backlog for payment-service, then starts it and kills it with
// SIGKILL again and again, each time only once it holds a batch of order.created it cannot
// finish, more often than the old delivery limit; then lets it run. Redeliveries caused by a dying consumer are the infrastructure's, not
// the events': none may be dead-lettered, and every order completes.
func TestFaultCrashLoop(t *testing.T) {
	if crashes <= broker.FailureLimit {
		t.Fatalf("%d crashes do not outnumber the %d failures a message may have", crashes, broker.FailureLimit)
	}
	e := start(t, stack.Options{})
	if err := e.stack.Stop("payment", 0); err != nil {
		t.Fatalf("stop payment: %v", err)
	}
	res := e.stream(streamOptions{Orders: 320, Duration: 8 * time.Second}, nil)
	queue := catalog.Subscription{Consumer: catalog.Payment, RoutingKey: catalog.OrderCreated}.Queue()
	ctx := t.Context()
	if n := e.depthOf(ctx, queue); n < minAccepted {
		t.Fatalf("%s holds %d messages, want the backlog of at least %d", queue, n, minAccepted)
	}

	// An exclusive lock on payment's inbox holds every batch in its first statement: the
	// consumer has its prefetch delivered and unacked, and can settle none of it.
	pool := e.pools()["payment"]
	lockConn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Release()
	lock, err := lockConn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatalf("lock payment's inbox: %v", err)
	}
	for i := 1; i <= crashes; i++ {
		began := time.Now()
		if err := e.stack.RestartContext(ctx, "payment", 0); err != nil {
			t.Fatalf("restart payment (%d): %v", i, err)
		}
		held := e.waitBlockedBatch(ctx, pool, began)
		unacked := e.waitUnacked(ctx, queue)
		e.stack.Kill("payment", 0)
		t.Logf("crash %d: killed payment %s after its start, a batch in hand waiting on the lock (%d session(s)); "+
			"the management API reports %d unacked", i, time.Since(began).Round(time.Millisecond), held, unacked)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.stack.RestartContext(ctx, "payment", 0); err != nil {
		t.Fatalf("restart payment: %v", err)
	}
	e.verify(res, 0)
	if n, err := e.metric(ctx, "payment", "ordersaga_events_consumed_total", `outcome="dead_lettered"`); err != nil || n != 0 {
		t.Errorf("payment dead-lettered %v events (%v)", n, err)
	}
}

// depthOf returns how many messages wait in queue.
func (e *env) depthOf(ctx context.Context, queue string) int {
	e.t.Helper()
	depths, err := e.queueDepths(ctx)
	if err != nil {
		e.t.Fatalf("queue depths: %v", err)
	}
	return depths[queue]
}

// waitBlockedBatch waits until a transaction of payment that began after since waits for a
// lock: a batch the consumer took and cannot settle. It returns how many wait.
func (e *env) waitBlockedBatch(ctx context.Context, pool *pgxpool.Pool, since time.Time) int {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := pool.QueryRow(ctx, `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
			  AND wait_event_type = 'Lock' AND backend_start >= $1`, since).Scan(&n)
		if err != nil {
			e.t.Fatalf("pg_stat_activity: %v", err)
		}
		if n > 0 {
			return n
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("payment took no batch within 30s of its start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUnacked waits until the management API reports deliveries of queue unacknowledged, as
// the broker sees the consumer holding them.
func (e *env) waitUnacked(ctx context.Context, queue string) int {
	e.t.Helper()
	u, err := url.Parse(e.stack.AMQPURL)
	if err != nil {
		e.t.Fatal(err)
	}
	path := "/api/queues/" + url.PathEscape(strings.TrimPrefix(u.Path, "/")) + "/" + url.PathEscape(queue)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var q struct {
			Unacked   int `json:"messages_unacknowledged"`
			Consumers int `json:"consumers"`
		}
		if err := testenv.ManagementGet(ctx, path, &q); err != nil {
			e.t.Fatalf("management API: %v", err)
		}
		if q.Unacked > 0 && q.Consumers > 0 {
			return q.Unacked
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: no unacked deliveries within 30s (consumers %d)", queue, q.Consumers)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
