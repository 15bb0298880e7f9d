package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// load places orders and follows each to its final status with one WatchOrder stream.
type load struct {
	clients []orderv1.OrderServiceClient
	product string
	drain   time.Duration
	next    atomic.Uint64
}

// result is what one run measured.
type result struct {
	name      string
	placed    int // CreateOrder succeeded
	errors    int // CreateOrder or the watch failed
	completed int // reached a final status
	outcomes  map[orderv1.OrderStatus]int
	latencies []time.Duration // create → final status, of completed orders
	elapsed   time.Duration   // first create → last final status
	firstErr  error
}

type sample struct {
	placed  bool
	status  orderv1.OrderStatus
	latency time.Duration
	end     time.Time
	err     error
}

func final(s orderv1.OrderStatus) bool {
	return s == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED ||
		s == orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED ||
		s == orderv1.OrderStatus_ORDER_STATUS_CANCELLED
}

// one places an order and watches it until its final status or ctx ends. The mix is mostly
// the happy path: 1 in 20 orders is paid with a declined card, 1 in 20 with a debit card.
func (l *load) one(ctx context.Context) sample {
	n := l.next.Add(1)
	client := l.clients[n%uint64(len(l.clients))]
	method := "credit_card"
	switch n % 20 {
	case 0:
		method = "declined_card"
	case 1:
		method = "debit_card"
	}
	start := time.Now()
	resp, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		CustomerId:      uuid.NewString(),
		PaymentMethod:   method,
		Items:           []*orderv1.LineItem{{ProductId: l.product, Quantity: 1, UnitPrice: "9.90"}},
		ShippingAddress: &orderv1.ShippingAddress{CountryCode: "BR"},
	})
	if err != nil {
		return sample{err: fmt.Errorf("create: %w", err)}
	}
	o := resp.GetOrder()
	if final(o.GetStatus()) {
		return sample{placed: true, status: o.GetStatus(), latency: time.Since(start), end: time.Now()}
	}
	stream, err := client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		return sample{placed: true, err: fmt.Errorf("watch %s: %w", o.GetOrderId(), err)}
	}
	for {
		w, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return sample{placed: true, err: fmt.Errorf("watch %s: stream ended before a final status", o.GetOrderId())}
		}
		if err != nil {
			return sample{placed: true, err: fmt.Errorf("watch %s: %w", o.GetOrderId(), err)}
		}
		if s := w.GetOrder().GetStatus(); final(s) {
			now := time.Now()
			return sample{placed: true, status: s, latency: now.Sub(start), end: now}
		}
	}
}

// openLoop starts orders at a fixed rate whatever the system's pace, so that latency includes
// any queueing the system builds up.
func (l *load) openLoop(ctx context.Context, rate float64, d time.Duration) *result {
	follow, cancel := context.WithTimeout(ctx, d+l.drain)
	defer cancel()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var mu sync.Mutex
	var samples []sample
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(at)):
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			s := l.one(follow)
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(start, samples)
}

// closedLoop runs workers that each place the next order as soon as the previous one is
// final: the throughput the system sustains.
func (l *load) closedLoop(ctx context.Context, workers int, d time.Duration) *result {
	follow, cancel := context.WithTimeout(ctx, d+l.drain)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	perWorker := make([][]sample, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				perWorker[w] = append(perWorker[w], l.one(follow))
			}
		})
	}
	wg.Wait()
	return summarize(start, slices.Concat(perWorker...))
}

func summarize(start time.Time, samples []sample) *result {
	r := &result{outcomes: map[orderv1.OrderStatus]int{}}
	last := start
	for _, s := range samples {
		if s.placed {
			r.placed++
		}
		if s.err != nil {
			r.errors++
			if r.firstErr == nil {
				r.firstErr = s.err
			}
			continue
		}
		r.completed++
		r.outcomes[s.status]++
		r.latencies = append(r.latencies, s.latency)
		if s.end.After(last) {
			last = s.end
		}
	}
	r.elapsed = last.Sub(start)
	slices.Sort(r.latencies)
	return r
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
