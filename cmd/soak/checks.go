package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/internal/loadgen"
	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/inbox"
)

// settlement is how far the saga is from quiet after the load.
type settlement struct {
	nonTerminal int // orders not final
	outboxRows  int // events not yet published, all services
	queued      int // messages waiting in the work queues
}

func (s settlement) quiet() bool { return s.nonTerminal == 0 && s.outboxRows == 0 && s.queued == 0 }

func settle(ctx context.Context, pools map[string]*pgxpool.Pool, conn *broker.Conn) (settlement, error) {
	var st settlement
	if err := pools["order"].QueryRow(ctx,
		`SELECT count(*) FROM orders WHERE status NOT IN ('CONFIRMED', 'PAYMENT_FAILED', 'CANCELLED')`).Scan(&st.nonTerminal); err != nil {
		return st, fmt.Errorf("orders not terminal: %w", err)
	}
	for _, svc := range stack.Services {
		var n int
		if err := pools[svc].QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
			return st, fmt.Errorf("outbox of %s: %w", svc, err)
		}
		st.outboxRows += n
	}
	ch, err := conn.Channel(ctx)
	if err != nil {
		return st, err
	}
	defer ch.Close()
	for _, sub := range catalog.Subscriptions() {
		q, err := ch.QueueDeclarePassive(sub.Queue(), true, false, false, false, nil)
		if err != nil {
			return st, fmt.Errorf("queue %s: %w", sub.Queue(), err)
		}
		st.queued += q.Messages
	}
	return st, nil
}

// Growth bounds: a figure at the end may exceed the first interval's by half of it plus a
// floor, no more. The first interval is under full load and past start-up, so the pools, caches
// and consumers are all there by then; what grows beyond it over the whole run is a leak.
const growthFactor = 1.5

var growthFloors = map[string]float64{
	"RSS":        64 << 20, // bytes: heap headroom the Go runtime may keep after a peak
	"goroutines": 50,       // RPC streams and handlers in flight when the first row was taken
	"FDs":        20,
	"PG conns":   4,
}

// growth checks one figure of one service between the first and the last sample.
func growth(what string, first, last float64) (limit float64, ok bool) {
	limit = first*growthFactor + growthFloors[what]
	return limit, last <= limit
}

// inboxBound is the most rows the inboxes may hold at the end: the events handled in the last
// retention + prune interval + one sample interval (every row older is pruned by then). ok is
// false when the run is too short for the retention to have pruned anything.
func inboxBound(samples []sample, retention, interval time.Duration) (bound float64, ok bool) {
	if len(samples) == 0 {
		return 0, false
	}
	end := samples[len(samples)-1]
	window := retention + inbox.PruneInterval(retention) + interval
	for i := len(samples) - 2; i >= 0; i-- {
		if end.at-samples[i].at >= window {
			return end.consumed() - samples[i].consumed(), true
		}
	}
	return 0, false
}

// report prints the rows as they come and the summary at the end.
type report struct {
	cfg     config
	out     io.Writer
	samples []sample
}

const rowFormat = "%-8s %8s %7s %8s %8s %6s  %-19s %-19s %-15s %-15s %9s %7s %8s %9s\n"

func (r *report) header() {
	fmt.Fprintf(r.out, rowFormat, "time", "placed", "done", "orders/s", "p99", "errors",
		"RSS MB o/p/i/s", "goroutines o/p/i/s", "FDs o/p/i/s", "PG conns o/p/i/s",
		"orders MB", "outbox", "inbox MB", "inbox rows")
}

func (r *report) add(s sample) {
	prevAt := time.Duration(0)
	if n := len(r.samples); n > 0 {
		prevAt = r.samples[n-1].at
	}
	r.samples = append(r.samples, s)
	perSvc := func(f func(proc) string) string {
		parts := make([]string, len(stack.Services))
		for i, svc := range stack.Services {
			parts[i] = f(s.procs[svc])
		}
		return strings.Join(parts, "/")
	}
	rate := float64(s.window.completed) / (s.at - prevAt).Seconds()
	fmt.Fprintf(r.out, rowFormat,
		s.at.Round(time.Second), fmt.Sprint(s.window.placed), fmt.Sprint(s.window.completed),
		fmt.Sprintf("%.1f", rate), s.window.p99.Round(time.Millisecond), fmt.Sprint(s.window.createErrs),
		perSvc(func(p proc) string { return fmt.Sprintf("%.0f", float64(p.rss)/(1<<20)) }),
		perSvc(func(p proc) string { return fmt.Sprint(p.goroutines) }),
		perSvc(func(p proc) string { return fmt.Sprint(p.fds) }),
		perSvc(func(p proc) string { return fmt.Sprint(p.pgConns) }),
		fmt.Sprintf("%.1f", float64(s.tables.orders)/(1<<20)), fmt.Sprint(s.tables.outboxRows),
		fmt.Sprintf("%.1f", float64(s.tables.inbox)/(1<<20)), fmt.Sprint(s.tables.inboxRows))
}

// summary prints the totals and every check, and returns how many checks failed.
func (r *report) summary(t totals, st settlement, violations []ops.Violation, dlqs []ops.QueueDepth) int {
	w := r.out
	failed := 0
	check := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "  %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(w, "\nsummary: %d placed, %d final %v; create→final p50 %s, p99 %s, max %s\n",
		t.placed, t.completed, t.byStatus, loadgen.Percentile(t.latencies, 0.5).Round(time.Millisecond),
		loadgen.Percentile(t.latencies, 0.99).Round(time.Millisecond), loadgen.Percentile(t.latencies, 1).Round(time.Millisecond))
	if len(r.samples) > 1 {
		loadTime := r.samples[len(r.samples)-1].at
		fmt.Fprintf(w, "  %.1f orders/s over %s (rate asked %g/s)\n", float64(t.completed)/loadTime.Seconds(), loadTime.Round(time.Second), r.cfg.rate)
	}
	fmt.Fprintln(w, "invariants:")
	check(t.createErrs == 0, "CreateOrder errors: %d %v", t.createErrs, t.firstErrs)
	check(t.watchErrs == 0 && t.unfinished == 0, "every order followed to a final status: %d watch errors, %d unfinished", t.watchErrs, t.unfinished)
	check(st.nonTerminal == 0, "orders left not terminal: %d", st.nonTerminal)
	check(st.queued == 0, "messages left in the work queues: %d", st.queued)
	check(st.outboxRows == 0, "events left in the outboxes: %d", st.outboxRows)
	dead := 0
	for _, q := range dlqs {
		dead += q.Depth
	}
	check(dead == 0, "dead letters: %d", dead)
	var vs []string
	for i, v := range violations {
		if i == 5 {
			vs = append(vs, fmt.Sprintf("… %d in all", len(violations)))
			break
		}
		vs = append(vs, fmt.Sprintf("%s %s: %s", v.OrderID, v.Rule, v.Detail))
	}
	check(len(violations) == 0, "audit violations: %d %v", len(violations), vs)

	fmt.Fprintf(w, "growth (the end against the first interval; bound: first × %.1f + a floor):\n", growthFactor)
	if len(r.samples) < 2 {
		check(false, "fewer than two samples: run longer than -interval")
		return failed
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	figures := []struct {
		what string
		get  func(proc) float64
	}{
		{"RSS", func(p proc) float64 { return float64(p.rss) }},
		{"goroutines", func(p proc) float64 { return float64(p.goroutines) }},
		{"FDs", func(p proc) float64 { return float64(p.fds) }},
		{"PG conns", func(p proc) float64 { return float64(p.pgConns) }},
	}
	for _, f := range figures {
		for _, svc := range stack.Services {
			a, b := f.get(first.procs[svc]), f.get(last.procs[svc])
			limit, ok := growth(f.what, a, b)
			if f.what == "RSS" {
				check(ok, "%s %s: %.0f MB → %.0f MB (bound %.0f MB)", svc, f.what, a/(1<<20), b/(1<<20), limit/(1<<20))
			} else {
				check(ok, "%s %s: %.0f → %.0f (bound %.0f)", svc, f.what, a, b, limit)
			}
		}
	}
	if bound, ok := inboxBound(r.samples, r.cfg.inboxRetention, r.cfg.interval); ok {
		check(float64(last.tables.inboxRows) <= bound, "inbox rows at the end: %d, at most the %.0f events handled in the last retention + prune interval + interval",
			last.tables.inboxRows, bound)
	} else {
		fmt.Fprintf(w, "  --   inbox rows at the end: %d; not bounded by the retention (%s) in a run this short\n", last.tables.inboxRows, r.cfg.inboxRetention)
	}
	return failed
}
