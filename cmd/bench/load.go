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

// load places orders and follows each to its final status with one WatchOrder stream, as a
// client of the API would.
type load struct {
	clients  []orderv1.OrderServiceClient
	products []string // each order is one unit of one of them, picked at random
	drain    time.Duration
	next     atomic.Uint64
}

// sample is one order as the load generator saw it.
type sample struct {
	orderID   string
	requestID string
	placed    bool // CreateOrder succeeded
	status    orderv1.OrderStatus
	latency   time.Duration // create → final status
	end       time.Time
	// unfinished: no final status before the drain ended; err: anything else that went wrong.
	unfinished bool
	err        error
}

func (s sample) final() bool { return s.err == nil && !s.unfinished }

func final(s orderv1.OrderStatus) bool {
	return s == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED ||
		s == orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED ||
		s == orderv1.OrderStatus_ORDER_STATUS_CANCELLED
}

// one places an order and watches it until its final status or ctx ends. The mix is mostly
// the happy path: 1 in 20 orders is paid with a declined card, 1 in 20 with a debit card. Each
// order carries a request id, as a client that may retry sends, so that an order whose
// CreateOrder failed can still be found afterwards.
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
	product := l.products[rand.IntN(len(l.products))]
	smp := sample{requestID: uuid.NewString()}
	fail := func(err error) sample {
		if ctx.Err() != nil {
			smp.unfinished = true
		} else {
			smp.err = err
		}
		return smp
	}
	start := time.Now()
	resp, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		CustomerId:      uuid.NewString(),
		PaymentMethod:   method,
		Items:           []*orderv1.LineItem{{ProductId: product, Quantity: 1, UnitPrice: "9.90"}},
		ShippingAddress: &orderv1.ShippingAddress{CountryCode: "BR"},
		RequestId:       smp.requestID,
	})
	if err != nil {
		return fail(fmt.Errorf("create: %w", err))
	}
	o := resp.GetOrder()
	smp.placed, smp.orderID = true, o.GetOrderId()
	done := func(s orderv1.OrderStatus) sample {
		smp.end = time.Now()
		smp.status, smp.latency = s, smp.end.Sub(start)
		return smp
	}
	if final(o.GetStatus()) {
		return done(o.GetStatus())
	}
	stream, err := client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		return fail(fmt.Errorf("watch %s: %w", o.GetOrderId(), err))
	}
	for {
		w, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return fail(fmt.Errorf("watch %s: stream ended before a final status", o.GetOrderId()))
		}
		if err != nil {
			return fail(fmt.Errorf("watch %s: %w", o.GetOrderId(), err))
		}
		if s := w.GetOrder().GetStatus(); final(s) {
			return done(s)
		}
	}
}

// openLoop starts orders at a fixed rate whatever the system's pace, so that latency includes
// any queueing the system builds up. It returns once every order is final or the drain ended.
func (l *load) openLoop(ctx context.Context, rate float64, d time.Duration) (time.Time, []sample) {
	follow, cancel := context.WithTimeout(ctx, d+l.drain)
	defer cancel()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var mu sync.Mutex
	var samples []sample
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		// Behind schedule (a slow start of the goroutines, a GC), orders go out at once.
		timer.Reset(time.Until(at))
		select {
		case <-ctx.Done():
		case <-timer.C:
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
				perWorker[w] = append(perWorker[w], l.one(follow))
			}
		})
	}
	wg.Wait()
	return start, slices.Concat(perWorker...)
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
