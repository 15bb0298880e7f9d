package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// appName marks the soak's own database sessions, so that they are not counted as the
// services'.
const appName = "ordersaga-soak"

// proc is one service process as the sampler sees it.
type proc struct {
	rss        int64 // bytes, VmRSS from /proc/<pid>/status
	goroutines int   // go_goroutines from its /metrics
	fds        int   // entries of /proc/<pid>/fd
	pgConns    int   // sessions on its database (pg_stat_activity)
	consumed   float64
}

// tables are the sizes of the tables that grow with the saga, summed over the databases.
type tables struct {
	orders                int64 // bytes, pg_total_relation_size
	outbox, inbox         int64 // bytes
	outboxRows, inboxRows int64
}

// sample is every figure of one moment.
type sample struct {
	at     time.Duration // since the load started
	window window
	procs  map[string]proc
	tables tables
}

// consumed is how many events the services handled so far, all queues.
func (s sample) consumed() float64 {
	var n float64
	for _, p := range s.procs {
		n += p.consumed
	}
	return n
}

// sampler reads a running stack's processes, metrics and databases.
type sampler struct {
	stack *stack.Stack
	pools map[string]*pgxpool.Pool // by service
}

func (sm *sampler) sample(ctx context.Context) (map[string]proc, tables, error) {
	procs := map[string]proc{}
	for _, svc := range stack.Services {
		var p proc
		pid := sm.stack.PID(svc, 0)
		if pid == 0 {
			return nil, tables{}, fmt.Errorf("%s is not running", svc)
		}
		var err error
		if p.rss, err = rss(pid); err != nil {
			return nil, tables{}, err
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			return nil, tables{}, fmt.Errorf("%s: %w", svc, err)
		}
		p.fds = len(fds)
		families, err := sm.stack.Metrics(ctx, svc, 0)
		if err != nil {
			return nil, tables{}, fmt.Errorf("metrics of %s: %w", svc, err)
		}
		for _, m := range families["go_goroutines"].GetMetric() {
			p.goroutines = int(m.GetGauge().GetValue())
		}
		for _, m := range families["ordersaga_events_consumed_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "ok" {
					p.consumed += m.GetCounter().GetValue()
				}
			}
		}
		procs[svc] = p
	}
	if err := sm.connections(ctx, procs); err != nil {
		return nil, tables{}, err
	}
	t, err := sm.tables(ctx)
	return procs, t, err
}

// connections counts each service's sessions on its database, the soak's own left out.
func (sm *sampler) connections(ctx context.Context, procs map[string]proc) error {
	for _, svc := range stack.Services {
		var n int
		if err := sm.pools[svc].QueryRow(ctx, `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name <> $1`, appName).Scan(&n); err != nil {
			return fmt.Errorf("connections of %s: %w", svc, err)
		}
		p := procs[svc]
		p.pgConns = n
		procs[svc] = p
	}
	return nil
}

func (sm *sampler) tables(ctx context.Context) (tables, error) {
	var t tables
	for _, svc := range stack.Services {
		var orders, outbox, inbox, outboxRows, inboxRows int64
		if err := sm.pools[svc].QueryRow(ctx, `
			SELECT coalesce(pg_total_relation_size(to_regclass('orders')), 0),
			       pg_total_relation_size('outbox'), pg_total_relation_size('idempotency_keys'),
			       (SELECT count(*) FROM outbox), (SELECT count(*) FROM idempotency_keys)`).
			Scan(&orders, &outbox, &inbox, &outboxRows, &inboxRows); err != nil {
			return t, fmt.Errorf("table sizes of %s: %w", svc, err)
		}
		t.orders += orders
		t.outbox += outbox
		t.inbox += inbox
		t.outboxRows += outboxRows
		t.inboxRows += inboxRows
	}
	return t, nil
}

// rss reads a process's resident set size from /proc/<pid>/status.
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
