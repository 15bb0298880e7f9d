package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// unroutable is a message the broker confirms and returns: its exchange has no binding for it.
func unroutable(id string) broker.Message {
	return broker.Message{Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: "order.nobody-listens", MessageID: id, Body: []byte("x")}
}

// The same event may be in flight twice (a relay's handover and its poll), once routed and
// once not: each publish's return is its own.
func TestPublisherTellsReturnsOfTheSameMessageIDApart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	routed := unroutable("same")
	routed.RoutingKey = catalog.OrderCreated
	routed.Headers = amqp.Table{"x-test": "kept"}

	first, err := h.pub.Send(ctx, []broker.Message{unroutable("same")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.pub.Send(ctx, []broker.Message{unroutable("same"), routed, unroutable("same")})
	if err != nil {
		t.Fatal(err)
	}
	if ok := first.Wait(ctx); !slices.Equal(ok, []bool{false}) {
		t.Errorf("first batch ok = %v, want [false]", ok)
	}
	if err := first.Err(); err == nil {
		t.Error("first batch: no error for an unroutable message")
	}
	if ok := second.Wait(ctx); !slices.Equal(ok, []bool{false, true, false}) {
		t.Errorf("second batch ok = %v, want [false true false]", ok)
	}
	if got := h.depth(catalog.Subscription{Consumer: catalog.Payment, RoutingKey: catalog.OrderCreated}.Queue()); got != 1 {
		t.Errorf("queue holds %d messages, want the routed one", got)
	}
	if _, added := routed.Headers[broker.HeaderPublish]; added || len(routed.Headers) != 1 {
		t.Errorf("Send changed the caller's headers: %v", routed.Headers)
	}
}

// Returns nobody waits for yet must not be lost: the client library drops a return it cannot
// hand over within five seconds, and a lost return would count an unroutable message as routed
// and have its outbox row deleted.
func TestPublisherLosesNoReturnWhileNobodyWaits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const total, batch = 10_000, 500
	var pending []*broker.Pending
	for i := 0; i < total; i += batch {
		msgs := make([]broker.Message, batch)
		for j := range msgs {
			msgs[j] = unroutable(fmt.Sprintf("m-%d", i+j))
		}
		p, err := h.pub.Send(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	// Longer than the library waits for room before it drops a return.
	time.Sleep(6 * time.Second)
	routed := 0
	for _, p := range pending {
		for _, ok := range p.Wait(ctx) {
			if ok {
				routed++
			}
		}
		if err := p.Err(); err == nil || err.Error() != fmt.Sprintf("%d message(s) unroutable", batch) {
			t.Errorf("Err() = %v, want all %d unroutable", err, batch)
		}
	}
	if routed != 0 {
		t.Errorf("%d of %d unroutable messages counted as routed", routed, total)
	}
}
