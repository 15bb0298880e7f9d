package ops_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

const (
	sourceQueue = "payment.order-created"
	deadQueue   = sourceQueue + ".dlq"
	garbageID   = "garbage-1"
)

var garbage = []byte("not a protobuf message \xff\xfe")

// DeadLetters is a broker vhost whose payment.order-created.dlq holds two dead letters: an
// OrderCreated as a consumer that gave up on it leaves it (our headers), and garbage the
// broker itself dead-lettered after a reject (its x-death header).
type DeadLetters struct {
	URL     string
	Conn    *broker.Conn
	EventID string
	OrderID string
}

// TestDeadLetters runs the dead-letter tests one after the other in one vhost, each on a fresh
// set of dead letters: vhosts are costly to make.
func TestDeadLetters(t *testing.T) {
	url := testenv.VHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, url, testenv.Logger(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(conn.Close)
	for name, test := range map[string]func(*testing.T, *DeadLetters){
		"List":   testDeadLetterQueues,
		"Peek":   testPeek,
		"Replay": testReplay,
		"Order":  testFindDeadLetters,
	} {
		t.Run(name, func(t *testing.T) { test(t, seed(t, url, conn)) })
	}
}

// seed empties every queue and dead-letters two messages.
func seed(t *testing.T, url string, conn *broker.Conn) *DeadLetters {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &DeadLetters{URL: url, Conn: conn, EventID: uuid.NewString(), OrderID: uuid.NewString()}
	ch, err := conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	for _, s := range catalog.Subscriptions() {
		for _, q := range []string{s.Queue(), s.DeadLetterQueue()} {
			if _, err := ch.QueuePurge(q, false); err != nil {
				t.Fatalf("purge %s: %v", q, err)
			}
		}
	}

	// An event as a consumer that gave up on it leaves it (pkg/broker consumer.go deadLetter).
	body, err := proto.Marshal(&orderv1.OrderCreated{
		EventId: d.EventID, OrderId: d.OrderID, OccurTime: timestamppb.Now(),
		CustomerId: uuid.NewString(), PaymentMethod: "credit_card", TotalMinor: 4990,
	})
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.NewPublisher(conn)
	defer pub.Close()
	if ok, err := pub.Publish(ctx, []broker.Message{{
		Exchange: broker.DeadLetterExchange, RoutingKey: sourceQueue, MessageID: d.EventID,
		Type: "order.v1.OrderCreated", CorrelationID: d.OrderID, Timestamp: time.Now(), Body: body,
		Headers: amqp.Table{
			"traceparent":           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			"x-delivery-count":      int64(2),
			broker.HeaderReason:     "test: payment refused",
			broker.HeaderQueue:      sourceQueue,
			broker.HeaderExchange:   catalog.Exchange(catalog.OrderCreated),
			broker.HeaderRoutingKey: catalog.OrderCreated,
			broker.HeaderFailedAt:   time.Now().UTC().Format(time.RFC3339Nano),
		},
	}}); err != nil || !ok[0] {
		t.Fatalf("publish: %v %v", ok, err)
	}
	waitDepth(t, conn, deadQueue, 1)

	// Garbage that the broker dead-letters on a reject.
	if err := ch.PublishWithContext(ctx, "", sourceQueue, true, false, amqp.Publishing{
		MessageId: garbageID, Type: "order.v1.OrderCreated", DeliveryMode: amqp.Persistent, Body: garbage,
	}); err != nil {
		t.Fatal(err)
	}
	var got amqp.Delivery
	testenv.Eventually(t, 10*time.Second, "garbage in the queue", func() bool {
		var ok bool
		got, ok, err = ch.Get(sourceQueue, false)
		return err != nil || ok
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Reject(false); err != nil {
		t.Fatal(err)
	}
	waitDepth(t, conn, deadQueue, 2)
	waitDepth(t, conn, sourceQueue, 0)
	return d
}

func depth(t *testing.T, conn *broker.Conn, queue string) int {
	t.Helper()
	ch, err := conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("depth of %s: %v", queue, err)
	}
	return q.Messages
}

func waitDepth(t *testing.T, conn *broker.Conn, queue string, want int) {
	t.Helper()
	got := -1
	testenv.Eventually(t, 10*time.Second, queue+" depth", func() bool {
		got = depth(t, conn, queue)
		return got == want
	})
}

func testDeadLetterQueues(t *testing.T, d *DeadLetters) {
	depths, err := ops.DeadLetterQueues(context.Background(), d.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(depths) != len(catalog.Subscriptions()) {
		t.Fatalf("%d queues, want %d", len(depths), len(catalog.Subscriptions()))
	}
	for _, q := range depths {
		want := 0
		if q.Queue == deadQueue {
			want = 2
			if q.Source != sourceQueue {
				t.Errorf("source of %s: %s", q.Queue, q.Source)
			}
		}
		if q.Depth != want {
			t.Errorf("%s: depth %d, want %d", q.Queue, q.Depth, want)
		}
	}
}

func testPeek(t *testing.T, d *DeadLetters) {
	ctx := context.Background()
	letters, err := ops.Peek(ctx, d.Conn, deadQueue, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(letters), letters)
	}
	byID := map[string]ops.DeadLetter{}
	for _, l := range letters {
		byID[l.MessageID] = l
	}

	ev := byID[d.EventID]
	if ev.Type != "order.v1.OrderCreated" || ev.CorrelationID != d.OrderID || ev.Undecodable != "" {
		t.Errorf("event: %+v", ev)
	}
	var decoded map[string]any
	if err := json.Unmarshal(ev.Event, &decoded); err != nil {
		t.Fatalf("event json %s: %v", ev.Event, err)
	}
	if decoded["orderId"] != d.OrderID || decoded["paymentMethod"] != "credit_card" || decoded["totalMinor"] != "4990" {
		t.Errorf("decoded event: %s", ev.Event)
	}
	if !strings.Contains(ev.Reason, "test: payment refused") || ev.FailedOn != sourceQueue ||
		ev.Exchange != catalog.Exchange(catalog.OrderCreated) || ev.RoutingKey != catalog.OrderCreated || ev.FailedAt == "" {
		t.Errorf("our dead-letter headers: %+v", ev)
	}

	g := byID[garbageID]
	if g.Event != nil || !strings.Contains(g.Undecodable, "decode order.v1.OrderCreated") || g.Preview != hex.EncodeToString(garbage) {
		t.Errorf("garbage: %+v", g)
	}
	if len(g.Deaths) != 1 || g.Deaths[0].Reason != "rejected" || g.Deaths[0].Queue != sourceQueue ||
		g.Deaths[0].Count != 1 || g.Deaths[0].Exchange != "" || len(g.Deaths[0].RoutingKeys) != 1 || g.Deaths[0].RoutingKeys[0] != sourceQueue {
		t.Errorf("x-death: %+v", g.Deaths)
	}
	if g.DeliveryCount < 1 {
		t.Errorf("delivery count %d", g.DeliveryCount)
	}

	// Nothing was taken, and a smaller peek sees fewer.
	waitDepth(t, d.Conn, deadQueue, 2)
	letters, err = ops.Peek(ctx, d.Conn, deadQueue, 1)
	if err != nil || len(letters) != 1 {
		t.Fatalf("peek 1: %d letters, %v", len(letters), err)
	}
	waitDepth(t, d.Conn, deadQueue, 2)

	if _, err := ops.Peek(ctx, d.Conn, "payment.nothing.dlq", 1); err == nil {
		t.Error("peek of an unknown queue: no error")
	}
}

func testReplay(t *testing.T, d *DeadLetters) {
	ctx := context.Background()

	if _, err := ops.Replay(ctx, d.Conn, deadQueue, "no-such-id"); err == nil {
		t.Error("replay of an unknown id: no error")
	}
	waitDepth(t, d.Conn, deadQueue, 2)

	n, err := ops.Replay(ctx, d.Conn, deadQueue, d.EventID)
	if err != nil || n != 1 {
		t.Fatalf("replay one: %d, %v", n, err)
	}
	waitDepth(t, d.Conn, deadQueue, 1)
	waitDepth(t, d.Conn, sourceQueue, 1)
	// Only the failed consumer's queue got it, not the other subscribers of the event.
	for _, s := range catalog.Subscriptions() {
		if s.Queue() != sourceQueue {
			if got := depth(t, d.Conn, s.Queue()); got != 0 {
				t.Errorf("%s: depth %d", s.Queue(), got)
			}
		}
	}

	ch, err := d.Conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	m, ok, err := ch.Get(sourceQueue, true)
	if err != nil || !ok {
		t.Fatalf("get replayed: %v %v", ok, err)
	}
	if m.MessageId != d.EventID || m.CorrelationId != d.OrderID || m.Type != "order.v1.OrderCreated" ||
		m.ContentType != broker.ContentTypeProtobuf || m.DeliveryMode != amqp.Persistent || m.Timestamp.IsZero() {
		t.Errorf("replayed properties: %+v", m)
	}
	var ev orderv1.OrderCreated
	if err := proto.Unmarshal(m.Body, &ev); err != nil || ev.GetEventId() != d.EventID || ev.GetOrderId() != d.OrderID {
		t.Errorf("replayed body: %v", err)
	}
	for k := range m.Headers {
		if strings.HasPrefix(k, "x-ordersaga-") || strings.HasPrefix(k, "x-death") {
			t.Errorf("replayed message keeps header %s: %v", k, m.Headers[k])
		}
	}
	// The source queue counts deliveries afresh (the broker sets the header, from 0).
	if n, ok := m.Headers["x-delivery-count"]; ok && n != int64(0) {
		t.Errorf("replayed message has x-delivery-count %v", n)
	}
	if m.Headers["traceparent"] == nil {
		t.Errorf("replayed message lost traceparent: %v", m.Headers)
	}

	n, err = ops.Replay(ctx, d.Conn, deadQueue, "")
	if err != nil || n != 1 {
		t.Fatalf("replay all: %d, %v", n, err)
	}
	waitDepth(t, d.Conn, deadQueue, 0)
	waitDepth(t, d.Conn, sourceQueue, 1)
	m, ok, err = ch.Get(sourceQueue, true)
	if err != nil || !ok || m.MessageId != garbageID || string(m.Body) != string(garbage) || m.Headers["x-death"] != nil {
		t.Errorf("replayed garbage: %v %v %+v", ok, err, m)
	}

	n, err = ops.Replay(ctx, d.Conn, deadQueue, "")
	if err != nil || n != 0 {
		t.Errorf("replay of an empty queue: %d, %v", n, err)
	}
}

func TestReplayHeaders(t *testing.T) {
	t.Parallel()
	got := ops.ReplayHeaders(amqp.Table{
		"traceparent": "x", broker.HeaderReason: "r", broker.HeaderQueue: "q", "x-death": []any{},
		"x-first-death-reason": "rejected", "x-last-death-queue": "q", "x-delivery-count": int64(3),
	})
	if len(got) != 1 || got["traceparent"] != "x" {
		t.Errorf("got %v", got)
	}
}

func testFindDeadLetters(t *testing.T, d *DeadLetters) {
	ctx := context.Background()
	v := &ops.OrderView{OrderID: d.OrderID}
	if err := ops.FindDeadLetters(ctx, d.Conn, v, 10); err != nil {
		t.Fatal(err)
	}
	if len(v.DeadLetters) != 1 || v.DeadLetters[0].Queue != deadQueue || v.DeadLetters[0].MessageID != d.EventID {
		t.Fatalf("dead letters of the order: %+v", v.DeadLetters)
	}
	if v.DeadLetterScan == nil || *v.DeadLetterScan != (ops.DeadLetterScan{Queues: len(catalog.Subscriptions()), Scanned: 2}) {
		t.Errorf("scan: %+v", v.DeadLetterScan)
	}
	if v.TraceID != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("trace id %q", v.TraceID)
	}
	// A limit leaves dead letters unseen, and says so; nothing was taken away.
	v = &ops.OrderView{OrderID: uuid.NewString()}
	if err := ops.FindDeadLetters(ctx, d.Conn, v, 1); err != nil {
		t.Fatal(err)
	}
	if len(v.DeadLetters) != 0 || v.TraceID != "" || *v.DeadLetterScan != (ops.DeadLetterScan{Queues: len(catalog.Subscriptions()), Scanned: 1, Skipped: 1}) {
		t.Errorf("other order: %+v %+v", v.DeadLetters, v.DeadLetterScan)
	}
	waitDepth(t, d.Conn, deadQueue, 2)
}
