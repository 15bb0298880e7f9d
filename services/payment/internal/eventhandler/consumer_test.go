package eventhandler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

// TestConsumer runs the handler behind the real consumer and relay: an order.created published
// on the broker comes back as payment.approved on payment.exchange.
func TestConsumer(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.VHost(t)
	pool := testenv.Postgres(t, "payment", postgres.Migrations...)
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

	// Listen on payment.exchange before anything can be published there.
	results := testenv.Listen(t, amqpURL, catalog.Exchange(catalog.PaymentApproved))

	relay := outbox.NewRelay(pool, conn, log)
	h := newHandlers(t, pool, relay)
	queue := catalog.Subscription{Consumer: catalog.Payment, RoutingKey: catalog.OrderCreated}.Queue()
	wg.Go(func() {
		if err := conn.Consume(ctx, queue, h.OrderCreated, broker.ConsumerOptions{}); err != nil {
			t.Errorf("consume: %v", err)
		}
	})
	wg.Go(func() {
		if err := relay.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	})

	ev := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(3, 1500))
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.NewPublisher(conn)
	defer pub.Close()
	ok, err := pub.Publish(ctx, []broker.Message{{
		Exchange:      catalog.Exchange(catalog.OrderCreated),
		RoutingKey:    catalog.OrderCreated,
		MessageID:     ev.EventId,
		Type:          string(ev.ProtoReflect().Descriptor().FullName()),
		CorrelationID: ev.OrderId,
		Timestamp:     time.Now(),
		Body:          body,
	}})
	if err != nil || !ok[0] {
		t.Fatalf("publish order.created: ok=%v err=%v", ok, err)
	}

	select {
	case d := <-results:
		if d.RoutingKey != catalog.PaymentApproved || d.Type != "payment.v1.PaymentApproved" || d.CorrelationId != ev.OrderId {
			t.Fatalf("got %s %s for order %s, want payment.approved for %s", d.RoutingKey, d.Type, d.CorrelationId, ev.OrderId)
		}
		var approved paymentv1.PaymentApproved
		if err := proto.Unmarshal(d.Body, &approved); err != nil {
			t.Fatal(err)
		}
		if approved.OrderId != ev.OrderId || approved.AmountMinor != 4500 || d.MessageId != approved.EventId {
			t.Errorf("payment.approved = %v (message id %s)", &approved, d.MessageId)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no payment.approved within 15s")
	}
	testenv.Eventually(t, 5*time.Second, "outbox emptied", func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n) == nil && n == 0
	})
}
