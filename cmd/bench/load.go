package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ordersaga/ordersaga/internal/loadgen"
)

// sample is one order as the load generator saw it.
type sample = loadgen.Sample

// load runs the scenarios' loops of orders, each followed for at most the scenario and drain.
type load struct {
	gen   *loadgen.Generator
	drain time.Duration
}

// openLoop starts orders at a fixed rate whatever the system's pace, so that latency includes
// any queueing the system builds up. It returns once every order is final or the drain ended.
func (l *load) openLoop(ctx context.Context, rate float64, d time.Duration) (time.Time, []sample) {
	follow, cancel := context.WithTimeout(ctx, d+l.drain)
	defer cancel()
	start := time.Now()
	var mu sync.Mutex
	var samples []sample
	l.gen.OpenLoop(ctx, follow, rate, d, func(s sample) {
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	})
	return start, samples
}

// closedLoop keeps inFlight orders in flight: each worker places the next order as soon as
// its previous one is final. That is the throughput the system sustains.
func (l *load) closedLoop(ctx context.Context, inFlight int, d time.Duration) (time.Time, []sample) {
	follow, cancel := context.WithTimeout(ctx, d+l.drain)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	perWorker := make([][]sample, inFlight)
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				perWorker[w] = append(perWorker[w], l.gen.One(follow))
			}
		})
	}
	wg.Wait()
	return start, slices.Concat(perWorker...)
}
