package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

func setup(t *testing.T) (*pgxpool.Pool, *broker.Conn) {
	t.Helper()
	pool := testenv.Postgres(t, "outbox", outbox.Migrations)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, testenv.VHost(t), testenv.Logger(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(conn.Close)
	return pool, conn
}

func add(t *testing.T, pool *pgxpool.Pool, routingKey string, n int) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var ids []string
	var events []outbox.Event
	for range n {
		id, order := uuid.NewString(), uuid.NewString()
		ids = append(ids, id)
		events = append(events, outbox.Event{ID: id, OrderID: order, RoutingKey: routingKey,
			Payload: &orderv1.OrderCreated{EventId: id, OrderId: order, TotalMinor: 4990}})
	}
	if err := outbox.Add(ctx, tx, events...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

func pending(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func run(t *testing.T, r *outbox.Relay) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

func TestTwoRelaysPublishEveryEventOnceWithItsProperties(t *testing.T) {
	t.Parallel()
	pool, conn := setup(t)
	want := map[string]bool{}
	for _, id := range add(t, pool, broker.OrderCreated, 300) {
		want[id] = true
	}
	run(t, outbox.NewRelay(pool, conn, testenv.Logger(t)))
	run(t, outbox.NewRelay(pool, conn, testenv.Logger(t)))

	ch, err := conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	deliveries, err := ch.Consume("payment.order-created", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case d := <-deliveries:
			mu.Lock()
			got[d.MessageId]++
			mu.Unlock()
			if d.Type != "order.v1.OrderCreated" || d.ContentType != broker.ContentTypeProtobuf || d.DeliveryMode != 2 {
				t.Fatalf("properties: type %q content type %q delivery mode %d", d.Type, d.ContentType, d.DeliveryMode)
			}
			var ev orderv1.OrderCreated
			if err := proto.Unmarshal(d.Body, &ev); err != nil || ev.GetEventId() != d.MessageId || ev.GetOrderId() != d.CorrelationId {
				t.Fatalf("body does not match properties: %v", err)
			}
		case <-timeout:
			t.Fatalf("received %d of %d events", len(got), len(want))
		}
	}
	for id, n := range got {
		if !want[id] {
			t.Errorf("unexpected event %s", id)
		}
		if n != 1 {
			t.Errorf("event %s published %d times", id, n)
		}
	}
	testenv.Eventually(t, 10*time.Second, "outbox emptied", func() bool { return pending(t, pool) == 0 })
}

func TestUnroutableEventStaysInTheOutbox(t *testing.T) {
	t.Parallel()
	pool, conn := setup(t)
	add(t, pool, "order.nobody-listens", 1)
	add(t, pool, broker.OrderCreated, 1)
	r := outbox.NewRelay(pool, conn, testenv.Logger(t))
	r.PollInterval = 50 * time.Millisecond
	run(t, r)
	testenv.Eventually(t, 10*time.Second, "routable event published", func() bool { return pending(t, pool) == 1 })
	time.Sleep(300 * time.Millisecond) // several polls: the unroutable one must still be there
	var key string
	if err := pool.QueryRow(context.Background(), "SELECT routing_key FROM outbox").Scan(&key); err != nil {
		t.Fatal(err)
	}
	if key != "order.nobody-listens" {
		t.Errorf("left in the outbox: %s", key)
	}
}
