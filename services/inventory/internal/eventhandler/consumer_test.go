package eventhandler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

// TestConsumerReservesEndToEnd runs the real consumer and relay: payment.approved published on
// the broker comes out as inventory.reserved on inventory.exchange.
func TestConsumerReservesEndToEnd(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.VHost(t)
	pool := testenv.Postgres(t, "inventory", postgres.Migrations...)
	log := testenv.Logger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := broker.Dial(ctx, amqpURL, log)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	var closeConn sync.Once
	defer closeConn.Do(conn.Close)

	// Listen on inventory.exchange before anything is published.
	received := testenv.Listen(t, amqpURL, catalog.Exchange(catalog.InventoryReserved))

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		stopped := make(chan struct{})
		go func() {
			wg.Wait()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			// Closing a consumer's channel can hang in the client library when it races the
			// consumer's own cancel; closing the connection releases it.
			t.Log("consumer slow to stop; closing the connection")
			closeConn.Do(conn.Close)
			<-stopped
		}
	}()
	relay := outbox.NewRelay(pool, conn, log)
	e := newEnvOn(t, pool, relay)
	queue := catalog.Subscription{Consumer: catalog.Inventory, RoutingKey: catalog.PaymentApproved}.Queue()
	wg.Go(func() {
		if err := conn.Consume(runCtx, queue, e.approved, broker.ConsumerOptions{}); err != nil {
			t.Errorf("consume: %v", err)
		}
	})
	wg.Go(func() {
		if err := relay.Run(runCtx); err != nil {
			t.Errorf("relay: %v", err)
		}
	})

	keyboard := "00000000-0000-0000-0000-000000000001" // seeded
	ev := approved(line(keyboard, 2))
	d := delivery(t, ev)
	pub := broker.NewPublisher(conn)
	defer pub.Close()
	ok, err := pub.Publish(ctx, []broker.Message{{
		Exchange:      catalog.Exchange(catalog.PaymentApproved),
		RoutingKey:    catalog.PaymentApproved,
		MessageID:     d.MessageId,
		Type:          d.Type,
		CorrelationID: d.CorrelationId,
		Timestamp:     time.Now(),
		Body:          d.Body,
	}})
	if err != nil || !ok[0] {
		t.Fatalf("publish: %v %v", ok, err)
	}

	select {
	case m := <-received:
		if m.RoutingKey != catalog.InventoryReserved || m.Type != "inventory.v1.InventoryReserved" || m.CorrelationId != ev.OrderId {
			t.Fatalf("received %s %s for %s", m.RoutingKey, m.Type, m.CorrelationId)
		}
		got := &inventoryv1.InventoryReserved{}
		if err := proto.Unmarshal(m.Body, got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if got.OrderId != ev.OrderId || got.EventId != m.MessageId || uuid.Validate(got.ReservationId) != nil || got.CountryCode != "DE" {
			t.Errorf("inventory.reserved = %v", got)
		}
	case <-ctx.Done():
		t.Fatal("no inventory.reserved received")
	}
}
