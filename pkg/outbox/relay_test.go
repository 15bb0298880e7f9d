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
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

func setup(t *testing.T) (*pgxpool.Pool, *broker.Conn, string) {
	t.Helper()
	pool := testenv.Postgres(t, "outbox", outbox.Migrations)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	amqpURL := testenv.VHost(t)
	conn, err := broker.Dial(ctx, amqpURL, testenv.Logger(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(conn.Close)
	return pool, conn, amqpURL
}

// add commits n events to the outbox and returns their rows, as a unit of work would before
// handing them to its relay.
func add(t *testing.T, pool *pgxpool.Pool, routingKey string, n int) []outbox.Row {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var events []outbox.Event
	for range n {
		id, order := uuid.NewString(), uuid.NewString()
		events = append(events, outbox.Event{ID: id, OrderID: order, RoutingKey: routingKey,
			Payload: &orderv1.OrderCreated{EventId: id, OrderId: order, TotalMinor: 4990}})
	}
	rows, err := outbox.Add(ctx, tx, events...)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n {
		t.Fatalf("Add returned %d rows for %d events", len(rows), n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return rows
}

// due makes every row of the outbox due for the poll now, as if nobody had handed it over
// and publish_after had passed.
func due(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), "UPDATE outbox SET publish_after = now()"); err != nil {
		t.Fatal(err)
	}
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
	pool, conn, _ := setup(t)
	want := map[string]bool{}
	for _, row := range add(t, pool, catalog.OrderCreated, 300) {
		want[row.Msg.MessageID] = true
	}
	due(t, pool) // nobody handed them over: the polls of both relays share them
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
	pool, conn, _ := setup(t)
	add(t, pool, "order.nobody-listens", 1)
	add(t, pool, catalog.OrderCreated, 1)
	due(t, pool)
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

// A relay that cannot publish what it holds is not ready, and ready again once a round of
// publishes is confirmed whole.
func TestRelayCheckFailsWhileItCannotPublish(t *testing.T) {
	t.Parallel()
	pool, conn, _ := setup(t)
	r := outbox.NewRelay(pool, conn, testenv.Logger(t))
	r.PollInterval = 50 * time.Millisecond
	if err := r.Check(context.Background()); err != nil {
		t.Fatalf("not ready before anything failed: %v", err)
	}
	add(t, pool, "order.nobody-listens", 1)
	due(t, pool)
	run(t, r)
	testenv.Eventually(t, 10*time.Second, "relay not ready while an event is unroutable", func() bool {
		return r.Check(context.Background()) != nil
	})
	if _, err := pool.Exec(context.Background(), "DELETE FROM outbox"); err != nil {
		t.Fatal(err)
	}
	add(t, pool, catalog.OrderCreated, 1)
	due(t, pool)
	testenv.Eventually(t, 10*time.Second, "relay ready once a publish is confirmed", func() bool {
		return r.Check(context.Background()) == nil
	})
}

func TestHandedOverRowsArePublishedAtOnceAndDeleted(t *testing.T) {
	t.Parallel()
	pool, conn, _ := setup(t)
	r := outbox.NewRelay(pool, conn, testenv.Logger(t))
	r.PollInterval = time.Hour // only the hand-over can publish within the test
	run(t, r)
	ch, err := conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	deliveries, err := ch.Consume("payment.order-created", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	rows := add(t, pool, catalog.OrderCreated, 50)
	// Two hand-overs, as two commits would make them.
	r.Publish(rows[:20:20])
	r.Publish(rows[20:])
	want := map[string]bool{}
	for _, row := range rows {
		want[row.Msg.MessageID] = true
	}
	got := map[string]int{}
	timeout := time.After(3 * time.Second) // publish_after is 5s after the insert
	for len(got) < len(want) {
		select {
		case d := <-deliveries:
			if !want[d.MessageId] {
				t.Fatalf("unexpected event %s", d.MessageId)
			}
			got[d.MessageId]++
		case <-timeout:
			t.Fatalf("received %d of %d handed-over events within 3s", len(got), len(want))
		}
	}
	testenv.Eventually(t, 3*time.Second, "published rows deleted", func() bool { return pending(t, pool) == 0 })
	if elapsed := time.Since(start); elapsed >= 5*time.Second {
		t.Errorf("published and deleted after %s: not before publish_after", elapsed)
	}
	select {
	case d := <-deliveries:
		t.Errorf("event %s published twice", d.MessageId)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestARowWhosePublishFailedIsPublishedByThePollLater(t *testing.T) {
	t.Parallel()
	pool, conn, amqpURL := setup(t)
	r := outbox.NewRelay(pool, conn, testenv.Logger(t))
	r.PollInterval = 50 * time.Millisecond
	run(t, r)

	lost := add(t, pool, "order.nobody-listens", 1)
	routed := add(t, pool, catalog.OrderCreated, 1)
	r.Publish(append(lost, routed...))
	// The routable row of the same round is confirmed and deleted; the unroutable one stays.
	testenv.Eventually(t, 3*time.Second, "routable event published", func() bool { return pending(t, pool) == 1 })
	var left int64
	if err := pool.QueryRow(context.Background(), "SELECT id FROM outbox").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != lost[0].ID {
		t.Fatalf("row %d left in the outbox, want the unroutable row %d", left, lost[0].ID)
	}

	// Once somebody listens and the row is due, the poll publishes it.
	deliveries := testenv.Listen(t, amqpURL, catalog.Exchange(catalog.OrderCreated))
	due(t, pool)
	select {
	case d := <-deliveries:
		if d.MessageId != lost[0].Msg.MessageID || d.RoutingKey != "order.nobody-listens" {
			t.Errorf("polled %s %s, want %s", d.RoutingKey, d.MessageId, lost[0].Msg.MessageID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll never published the row left in the outbox")
	}
	testenv.Eventually(t, 5*time.Second, "polled row deleted", func() bool { return pending(t, pool) == 0 })
}

// An event's trace context is stored with its row and published in its headers, also by the
// poll, which reads it back from the table; an untraced event carries none.
func TestPolledEventKeepsItsTraceContext(t *testing.T) {
	t.Parallel()
	pool, conn, amqpURL := setup(t)
	sc := broker.ParseTraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x")
	if !sc.IsValid() {
		t.Fatal("test trace context invalid")
	}
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	traced, untraced, order := uuid.NewString(), uuid.NewString(), uuid.NewString()
	if _, err := outbox.Add(ctx, tx,
		outbox.Event{ID: traced, OrderID: order, RoutingKey: catalog.OrderCreated, Payload: &orderv1.OrderCreated{EventId: traced, OrderId: order}, Trace: sc},
		outbox.Event{ID: untraced, OrderID: order, RoutingKey: catalog.OrderCreated, Payload: &orderv1.OrderCreated{EventId: untraced, OrderId: order}},
	); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := pool.QueryRow(ctx, `SELECT traceparent FROM outbox WHERE event_id = $1`, traced).Scan(&stored); err != nil || broker.ParseTraceContext(stored, "").TraceID() != sc.TraceID() {
		t.Fatalf("stored traceparent %q: %v", stored, err)
	}
	deliveries := testenv.Listen(t, amqpURL, catalog.Exchange(catalog.OrderCreated))
	due(t, pool)
	r := outbox.NewRelay(pool, conn, testenv.Logger(t))
	r.PollInterval = 50 * time.Millisecond
	run(t, r)
	timeout := time.After(10 * time.Second)
	for seen := 0; seen < 2; seen++ {
		select {
		case d := <-deliveries:
			got := broker.SpanContext(d.Headers)
			switch d.MessageId {
			case traced:
				if got.TraceID() != sc.TraceID() || got.TraceState().String() != "vendor=x" {
					t.Errorf("traced event published with headers %v", d.Headers)
				}
			case untraced:
				if got.IsValid() || d.Headers["traceparent"] != nil || d.Headers["tracestate"] != nil {
					t.Errorf("untraced event published with trace headers %v", d.Headers)
				}
			}
		case <-timeout:
			t.Fatal("the poll did not publish both events")
		}
	}
}
