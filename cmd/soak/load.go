package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// load places orders at a fixed rate and follows each to its final status with a WatchOrder
// stream, as a client would, recording what it saw for the sampler.
type load struct {
	clients  []orderv1.OrderServiceClient
	products []string
	next     atomic.Uint64

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

func final(s orderv1.OrderStatus) bool {
	return s == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED ||
		s == orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED ||
		s == orderv1.OrderStatus_ORDER_STATUS_CANCELLED
}

// run starts orders at rate for d, each followed with follow's deadline, and returns once
// every order is final or follow ended.
func (l *load) run(ctx, follow context.Context, rate float64, d time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		// Behind schedule (a GC, a busy machine), orders go out at once: the rate holds.
		timer.Reset(time.Until(at))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() { l.one(follow) })
	}
	wg.Wait()
}

// one places an order and watches it to its final status. 1 in 20 orders is paid with a
// declined card, so that the failure path runs too.
func (l *load) one(ctx context.Context) {
	n := l.next.Add(1)
	client := l.clients[n%uint64(len(l.clients))]
	method := "credit_card"
	if n%20 == 0 {
		method = "declined_card"
	}
	start := time.Now()
	resp, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		CustomerId:      uuid.NewString(),
		PaymentMethod:   method,
		Items:           []*orderv1.LineItem{{ProductId: l.products[rand.IntN(len(l.products))], Quantity: 1, UnitPrice: "9.90"}},
		ShippingAddress: &orderv1.ShippingAddress{CountryCode: "DE"},
		RequestId:       uuid.NewString(),
	})
	if err != nil {
		l.failed(ctx, &l.createErrs, fmt.Errorf("create: %w", err))
		return
	}
	l.mu.Lock()
	l.placed++
	l.mu.Unlock()
	o := resp.GetOrder()
	if final(o.GetStatus()) {
		l.done(start, o.GetStatus())
		return
	}
	stream, err := client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		l.failed(ctx, &l.watchErrs, fmt.Errorf("watch %s: %w", o.GetOrderId(), err))
		return
	}
	for {
		w, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			err = errors.New("stream ended before a final status")
		}
		if err != nil {
			l.failed(ctx, &l.watchErrs, fmt.Errorf("watch %s: %w", o.GetOrderId(), err))
			return
		}
		if s := w.GetOrder().GetStatus(); final(s) {
			l.done(start, s)
			return
		}
	}
}

func (l *load) done(start time.Time, s orderv1.OrderStatus) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.completions = append(l.completions, completion{at: now, latency: now.Sub(start), status: s})
}

// failed counts err in counter, or the order as unfinished when ctx ended first (the drain
// ran out: the final check finds the order in the database).
func (l *load) failed(ctx context.Context, counter *int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ctx.Err() != nil {
		l.unfinished++
		return
	}
	*counter++
	if len(l.firstErrs) < 5 {
		l.firstErrs = append(l.firstErrs, err.Error())
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
		p99:        percentile(lat, 0.99),
	}, cur
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
