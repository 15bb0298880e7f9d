//go:build faults || cluster

package faults

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// openTxBound is the longest a transaction of the stack's databases may stay open. Every
// service session runs with idle_in_transaction_session_timeout 15s and lock_timeout 15s
// (pkg/database SessionLimits): a process stalled between two statements of a transaction
// loses it, its row locks and its inbox claims after 15 s, and no handler legitimately holds one
// for seconds. 5 s more absorb the sampling interval and a loaded machine.
const openTxBound = 20 * time.Second

// outboxDrainTimeout bounds how long the outboxes may take to empty once the system is
// quiescent: a row leased by a replica that died or stalled is due again after the relay's
// 15 s lease, and the next 1 s poll publishes it.
const outboxDrainTimeout = 30 * time.Second

// report is one FAULT line: what a fault cost, for the suite's closing table.
type report struct {
	orders, lost, stuck, duplicates int
	dlq, outbox                     int // -1 until measured
	openTx                          int
	recover                         time.Duration
}

// report logs r as one line. lost (accepted orders not listed) and stuck (listed orders not
// terminal) are those of the last look for quiescence; recover is the probe order's time to
// completion after the fault when the stream had one, else the time from the fault's end
// until everything was quiescent.
func (e *env) report(r *report) {
	r.lost, r.stuck = e.missing, e.pending
	if e.tx != nil {
		r.openTx = e.tx.count()
	}
	e.t.Logf("FAULT %s orders=%d lost=%d duplicates=%d stuck=%d recover=%.1fs dlq=%d outbox=%d open_tx=%d",
		strings.TrimPrefix(e.t.Name(), "TestFault"), r.orders, r.lost, r.duplicates, r.stuck, r.recover.Seconds(), r.dlq, r.outbox, r.openTx)
}

// probe places one happy order once a fault is over and waits until it is terminal, failing the
// test unless that takes at most within. It returns the order's id and the time it took.
func (e *env) probe(ctx context.Context, timeout, within time.Duration) (string, time.Duration) {
	began := time.Now()
	req := e.request(0)
	req.RequestId = fmt.Sprintf("faults-%s-probe", e.run)
	id, _ := e.place(ctx, req, 0, timeout)
	if id == "" {
		e.t.Errorf("probe order not accepted after the fault")
		return "", 0
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := e.orders[0].GetOrder(cctx, &orderv1.GetOrderRequest{OrderId: id})
		cancel()
		took := time.Since(began)
		if err == nil && terminal[resp.GetOrder().GetStatus()] {
			e.t.Logf("probe order %s %s %s after the fault", id, resp.GetOrder().GetStatus(), took.Round(time.Millisecond))
			return id, took
		}
		if took > within || ctx.Err() != nil {
			e.t.Errorf("probe order %s not terminal %s after the fault, want at most %s (%v)", id, took.Round(time.Millisecond), within, err)
			return id, took
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// txWatch samples pg_stat_activity for transactions of the stack's databases older than
// openTxBound, from a connection of its own to the server's postgres database.
type txWatch struct {
	pool *pgxpool.Pool
	dbs  []string

	mu   sync.Mutex
	seen map[string]string // "pid@xact_start" → what it was doing, when it was seen too old
}

// watchTransactions samples every 250 ms until the test ends.
func (e *env) watchTransactions() *txWatch {
	e.t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
	if err != nil {
		e.t.Fatalf("transaction watch: %v", err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("transaction watch: %v", err)
	}
	w := &txWatch{pool: pool, seen: map[string]string{}}
	for _, u := range e.stack.DatabaseURLs {
		cfg, err := pgxpool.ParseConfig(u)
		if err != nil {
			e.t.Fatalf("transaction watch: %v", err)
		}
		w.dbs = append(w.dbs, cfg.ConnConfig.Database)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			// Errors are expected while a fault restarts the server: the next sample retries.
			_ = w.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
		pool.Close()
	})
	return w
}

// sample records the sessions whose transaction is older than openTxBound. A session in state
// idle holds no transaction of its client's: an idle LISTEN session that takes a notification
// runs a short transaction of the server's own, whose xact_start is that of the session's last
// statement (the LISTEN, long ago), and would be counted open for as long as the session lived.
func (w *txWatch) sample(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := w.pool.Query(ctx, `
		SELECT pid, datname, xact_start::text, (now() - xact_start)::text, state, left(query, 120)
		FROM pg_stat_activity
		WHERE datname = ANY($1) AND backend_type = 'client backend' AND state <> 'idle' AND xact_start < now() - $2::interval`,
		w.dbs, openTxBound)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		var db, started, age, state, query string
		if err := rows.Scan(&pid, &db, &started, &age, &state, &query); err != nil {
			return err
		}
		w.mu.Lock()
		w.seen[fmt.Sprintf("%d@%s", pid, started)] = fmt.Sprintf("%s pid %d open %s, %s: %s", db, pid, age, state, query)
		w.mu.Unlock()
	}
	return rows.Err()
}

func (w *txWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// checkTransactions samples once more and fails the test if any transaction was seen open
// longer than openTxBound at any time; it returns how many were.
func (e *env) checkTransactions() int {
	e.t.Helper()
	if err := e.tx.sample(e.t.Context()); err != nil {
		e.t.Errorf("pg_stat_activity: %v", err)
	}
	e.tx.mu.Lock()
	defer e.tx.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(e.tx.seen)) {
		e.t.Errorf("transaction open longer than %s: %s", openTxBound, e.tx.seen[k])
	}
	return len(e.tx.seen)
}

// drainOutboxes waits until every service's outbox is empty, failing the test unless that
// happens within outboxDrainTimeout; it returns the rows left.
func (e *env) drainOutboxes() int {
	e.t.Helper()
	pools := e.pools()
	deadline := time.Now().Add(outboxDrainTimeout)
	for {
		left, detail := 0, []string{}
		for _, svc := range slices.Sorted(maps.Keys(pools)) {
			var n int
			if err := pools[svc].QueryRow(e.t.Context(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
				e.t.Errorf("%s outbox: %v", svc, err)
				return -1
			}
			if n > 0 {
				left += n
				detail = append(detail, fmt.Sprintf("%s %d", svc, n))
			}
		}
		if left == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			e.t.Errorf("outboxes not empty %s after quiescence: %s", outboxDrainTimeout, strings.Join(detail, ", "))
			return left
		}
		time.Sleep(250 * time.Millisecond)
	}
}
