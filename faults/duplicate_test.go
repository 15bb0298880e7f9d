//go:build faults

package faults

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// routingKeys are the catalog's routing keys, each once.
func routingKeys() []string {
	var keys []string
	for _, s := range catalog.Subscriptions() {
		if !slices.Contains(keys, s.RoutingKey) {
			keys = append(keys, s.RoutingKey)
		}
	}
	return keys
}

// TestFaultDuplicateDelivery publishes events that were already processed again, with the same
// message id and the same bytes, on their exchange: once mid-stream, once on the quiet system
// afterwards, where it checks that nothing changed anywhere and nothing was published.
func TestFaultDuplicateDelivery(t *testing.T) {
	e := start(t, stack.Options{})
	captured := e.capture()
	pub := e.publisher()

	// Mid-stream: events of orders that are terminal already, of every routing key.
	res := e.stream(streamOptions{FaultAt: 8 * time.Second}, func(ctx context.Context) {
		n := 0
		for _, key := range routingKeys() {
			for _, d := range e.finished(ctx, captured.of(key), 10) {
				if err := pub.publish(ctx, d.Exchange, d.RoutingKey, again(d)); err != nil {
					t.Errorf("publish duplicate: %v", err)
					return
				}
				n++
			}
		}
		t.Logf("published %d duplicates mid-stream", n)
	})
	orders := e.verify(res, 0)
	confirmed := map[string]bool{}
	for _, o := range orders {
		if o.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
			confirmed[o.GetOrderId()] = true
		}
	}

	// Quiet system: duplicates of up to 40 events of every routing key.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	before := e.snapshot(ctx)
	publishedBefore := e.published(ctx)
	consumedBefore := e.consumed(ctx)
	want := map[string]float64{} // queue → duplicates it gets
	for _, s := range catalog.Subscriptions() {
		want[s.Queue()] = 0
	}
	var approved []string // orders whose payment.approved came twice
	for _, key := range routingKeys() {
		events := captured.of(key)
		if key == catalog.OrderCancelled && len(events) == 0 {
			// No order reaches its deadline in this stream; the deadline fault tests and the
			// services' handler tests deliver order.cancelled twice and late.
			continue
		}
		if len(events) == 0 {
			t.Errorf("no %s event captured", key)
			continue
		}
		for _, d := range events[:min(len(events), 40)] {
			if err := pub.publish(ctx, d.Exchange, d.RoutingKey, again(d)); err != nil {
				t.Fatalf("publish duplicate: %v", err)
			}
			if key == catalog.PaymentApproved {
				approved = append(approved, d.CorrelationId)
			}
			for _, s := range catalog.Subscriptions() {
				if s.RoutingKey == key {
					want[s.Queue()]++
				}
			}
		}
	}
	// Every duplicate was taken and acked by its consumers: the counters of acked events moved
	// by exactly the number of duplicates.
	var got map[string]float64
	deadline := time.Now().Add(time.Minute)
	for {
		got = e.consumed(ctx)
		for q := range got {
			got[q] -= consumedBefore[q]
		}
		if maps.Equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("duplicates acked per queue: %v, want %v", got, want)
	}
	e.waitQuiescent(res.Accepted)

	after := e.snapshot(ctx)
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if before[k] != after[k] {
			t.Errorf("duplicates changed %s:\n  before %s\n  after  %s", k, before[k], after[k])
		}
	}
	if p := e.published(ctx); p != publishedBefore {
		t.Errorf("duplicates made the services publish %v events", p-publishedBefore)
	}
	inventory := e.pools()["inventory"]
	for _, id := range approved {
		var n int
		if err := inventory.QueryRow(ctx, `SELECT count(*) FROM reservations WHERE order_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 1 || (confirmed[id] && n != 1) {
			t.Errorf("order %s (confirmed %v) has %d reservations", id, confirmed[id], n)
		}
	}
	e.audit(0)
	t.Logf("%d duplicates on the quiet system changed nothing", int(sum(want)))
}

// finished returns up to n of the events whose order is terminal.
func (e *env) finished(ctx context.Context, events []amqp.Delivery, n int) []amqp.Delivery {
	var out []amqp.Delivery
	for _, d := range events {
		if len(out) == n {
			break
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := e.orders[0].GetOrder(cctx, &orderv1.GetOrderRequest{OrderId: d.CorrelationId})
		cancel()
		if err == nil && terminal[resp.GetOrder().GetStatus()] {
			out = append(out, d)
		}
	}
	return out
}

// consumed returns, per queue, how many events its consumers acked.
func (e *env) consumed(ctx context.Context) map[string]float64 {
	e.t.Helper()
	out := map[string]float64{}
	for _, s := range catalog.Subscriptions() {
		v, err := e.metric(ctx, s.Consumer, "ordersaga_events_consumed_total", `outcome="ok"`, fmt.Sprintf("queue=%q", s.Queue()))
		if err != nil {
			e.t.Fatalf("metrics of %s: %v", s.Consumer, err)
		}
		out[s.Queue()] = v
	}
	return out
}

// published returns how many events all services published, whatever the outcome.
func (e *env) published(ctx context.Context) float64 {
	e.t.Helper()
	total := 0.0
	for _, svc := range stack.Services {
		v, err := e.metric(ctx, svc, "ordersaga_events_published_total")
		if err != nil {
			e.t.Fatalf("metrics of %s: %v", svc, err)
		}
		total += v
	}
	return total
}

func sum(m map[string]float64) float64 {
	total := 0.0
	for _, v := range m {
		total += v
	}
	return total
}
