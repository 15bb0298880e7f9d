// Package loadgen places orders as a client of the order API would and follows each to its
// final status over WatchOrder: the load of the benchmark and of the soak.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// Generator places orders over Clients, in turn, each one unit of one of Products picked at
// random.
type Generator struct {
	Clients  []orderv1.OrderServiceClient
	Products []string
	next     atomic.Uint64
}

// Sample is one order as the generator saw it.
type Sample struct {
	OrderID   string
	RequestID string
	Placed    bool // CreateOrder succeeded
	Status    orderv1.OrderStatus
	Latency   time.Duration // CreateOrder sent → final status seen
	End       time.Time
	// Unfinished: no final status before the context ended; Err: anything else that went
	// wrong, in CreateOrder when not Placed, in following the order when Placed.
	Unfinished bool
	Err        error
}

// Final reports whether the order was followed to its final status.
func (s Sample) Final() bool { return s.Err == nil && !s.Unfinished }

// Final reports whether s is a final status.
func Final(s orderv1.OrderStatus) bool {
	return s == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED ||
		s == orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED ||
		s == orderv1.OrderStatus_ORDER_STATUS_CANCELLED
}

// One places an order and watches it until its final status or ctx ends. The mix is mostly
// the happy path: 1 in 20 orders is paid with a declined card, 1 in 20 with a debit card. Each
// order carries a request id, as a client that may retry sends, so that an order whose
// CreateOrder failed can still be found afterwards.
func (g *Generator) One(ctx context.Context) Sample {
	n := g.next.Add(1)
	client := g.Clients[n%uint64(len(g.Clients))]
	method := "credit_card"
	switch n % 20 {
	case 0:
		method = "declined_card"
	case 1:
		method = "debit_card"
	}
	product := g.Products[rand.IntN(len(g.Products))]
	smp := Sample{RequestID: uuid.NewString()}
	fail := func(err error) Sample {
		if ctx.Err() != nil {
			smp.Unfinished = true
		} else {
			smp.Err = err
		}
		return smp
	}
	start := time.Now()
	resp, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		CustomerId:      uuid.NewString(),
		PaymentMethod:   method,
		Items:           []*orderv1.LineItem{{ProductId: product, Quantity: 1, UnitPrice: "9.90"}},
		ShippingAddress: &orderv1.ShippingAddress{CountryCode: "BR"},
		RequestId:       smp.RequestID,
	})
	if err != nil {
		return fail(fmt.Errorf("create: %w", err))
	}
	o := resp.GetOrder()
	smp.Placed, smp.OrderID = true, o.GetOrderId()
	done := func(s orderv1.OrderStatus) Sample {
		smp.End = time.Now()
		smp.Status, smp.Latency = s, smp.End.Sub(start)
		return smp
	}
	if Final(o.GetStatus()) {
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
		if s := w.GetOrder().GetStatus(); Final(s) {
			return done(s)
		}
	}
}

// OpenLoop places orders at rate for d whatever the system's pace, so that latency includes
// any queueing the system builds up, each followed with follow's deadline and handed to seen.
// It returns when ctx ends or once every order placed is final or unfinished.
func (g *Generator) OpenLoop(ctx, follow context.Context, rate float64, d time.Duration, seen func(Sample)) {
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
		// Behind schedule (a slow start of the goroutines, a GC), orders go out at once: the
		// rate holds.
		timer.Reset(time.Until(at))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() { seen(g.One(follow)) })
	}
	wg.Wait()
}

// Percentile of sorted durations, nearest rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
