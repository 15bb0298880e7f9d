package eventhandler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
)

// TestConsumer runs the handler behind the real consumer and relay: an inventory.reserved
// published on the broker comes back as shipping.scheduled on shipping.exchange.
func TestConsumer(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.VHost(t)
	pool := testenv.Postgres(t, "shipping", postgres.Migrations...)
	log := testenv.Logger(t)

	// Bounded, so that a broker that never answers fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	conn, err := broker.Dial(ctx, amqpURL, log)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		conn.Close()
	})

	// Listen on shipping.exchange before anything can be published there.
	results := testenv.Listen(t, amqpURL, catalog.Exchange(catalog.ShippingScheduled))

	relay := outbox.NewRelay(pool, conn, log)
	h := newHandlers(t, pool, relay, 0)
	queue := catalog.Subscription{Consumer: catalog.Shipping, RoutingKey: catalog.InventoryReserved}.Queue()
	wg.Go(func() {
		if err := conn.Consume(ctx, queue, h.InventoryReserved, broker.ConsumerOptions{}); err != nil {
			t.Errorf("consume: %v", err)
		}
	})
	wg.Go(func() {
		if err := relay.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	})

	ev := reserved(uuid.NewString(), "BR", 2)
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.NewPublisher(conn)
	defer pub.Close()
	ok, err := pub.Publish(ctx, []broker.Message{{
		Exchange:      catalog.Exchange(catalog.InventoryReserved),
		RoutingKey:    catalog.InventoryReserved,
		MessageID:     ev.EventId,
		Type:          string(ev.ProtoReflect().Descriptor().FullName()),
		CorrelationID: ev.OrderId,
		Timestamp:     time.Now(),
		Body:          body,
	}})
	if err != nil || !ok[0] {
		t.Fatalf("publish inventory.reserved: ok=%v err=%v", ok, err)
	}

	select {
	case d := <-results:
		if d.RoutingKey != catalog.ShippingScheduled || d.Type != "shipping.v1.ShippingScheduled" || d.CorrelationId != ev.OrderId {
			t.Fatalf("got %s %s for order %s, want shipping.scheduled for %s", d.RoutingKey, d.Type, d.CorrelationId, ev.OrderId)
		}
		var scheduled shippingv1.ShippingScheduled
		if err := proto.Unmarshal(d.Body, &scheduled); err != nil {
			t.Fatal(err)
		}
		if scheduled.OrderId != ev.OrderId || scheduled.FreightMinor != 1300 || !trackingCode(scheduled.TrackingCode) ||
			d.MessageId != scheduled.EventId {
			t.Errorf("shipping.scheduled = %v (message id %s)", &scheduled, d.MessageId)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no shipping.scheduled within 15s")
	}
	testenv.Eventually(t, 5*time.Second, "outbox emptied", func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n) == nil && n == 0
	})
}
