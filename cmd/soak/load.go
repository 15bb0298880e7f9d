package main

import (
	"context"
	"slices"
	"sync"
	"time"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/loadgen"
)

// load places orders at a fixed rate and follows each to its final status, recording what it
// saw for the sampler.
type load struct {
	gen loadgen.Generator

	mu          sync.Mutex
	placed      int
	createErrs  int
	watchErrs   int
	unfinished  int
	firstErrs   []string // the first few errors, for the summary
	completions []completion
}

// completion is one order that reached its final status.
type completion struct {
	at      time.Time
	latency time.Duration // CreateOrder sent → final status seen
	status  orderv1.OrderStatus
}

// run starts orders at rate for d, each followed with follow's deadline, and returns once
// every order is final or follow ended.
func (l *load) run(ctx, follow context.Context, rate float64, d time.Duration) {
	l.gen.OpenLoop(ctx, follow, rate, d, l.record)
}

// record counts what became of one order. An order whose follow ended first (the drain ran
// out) is unfinished: the final check finds it in the database.
func (l *load) record(s loadgen.Sample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.Placed {
		l.placed++
	}
	switch {
	case s.Unfinished:
		l.unfinished++
	case s.Err != nil:
		if s.Placed {
			l.watchErrs++
		} else {
			l.createErrs++
		}
		if len(l.firstErrs) < 5 {
			l.firstErrs = append(l.firstErrs, s.Err.Error())
		}
	default:
		l.completions = append(l.completions, completion{at: s.End, latency: s.Latency, status: s.Status})
	}
}

// window is what the load saw between two samples.
type window struct {
	placed, createErrs, completed int
	p99                           time.Duration
}

// totals is what the load saw so far.
type totals struct {
	placed, createErrs, watchErrs, unfinished, completed int
	latencies                                            []time.Duration // sorted
	firstErrs                                            []string
	byStatus                                             map[string]int
}

func (l *load) totals() totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := totals{placed: l.placed, createErrs: l.createErrs, watchErrs: l.watchErrs, unfinished: l.unfinished,
		completed: len(l.completions), firstErrs: slices.Clone(l.firstErrs), byStatus: map[string]int{}}
	for _, c := range l.completions {
		t.latencies = append(t.latencies, c.latency)
		t.byStatus[c.status.String()]++
	}
	slices.Sort(t.latencies)
	return t
}

// since returns what changed since prev, with the p99 latency of the orders that completed in
// between, and the totals now.
func (l *load) since(prev totals) (window, totals) {
	cur := l.totals()
	l.mu.Lock()
	lat := make([]time.Duration, 0, cur.completed-prev.completed)
	for _, c := range l.completions[prev.completed:cur.completed] {
		lat = append(lat, c.latency)
	}
	l.mu.Unlock()
	slices.Sort(lat)
	return window{
		placed:     cur.placed - prev.placed,
		createErrs: cur.createErrs - prev.createErrs,
		completed:  cur.completed - prev.completed,
		p99:        loadgen.Percentile(lat, 0.99),
	}, cur
}
