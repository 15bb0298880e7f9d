package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// harness is a broker connection on the test's own vhost with one consumer running.
type harness struct {
	t     *testing.T
	url   string
	vhost string
	conn  *broker.Conn
	pub   *broker.Publisher
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	amqpURL := testenv.VHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, amqpURL, testenv.Logger(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(conn.Close)
	pub := broker.NewPublisher(conn)
	t.Cleanup(pub.Close)
	u, _ := url.Parse(amqpURL)
	return &harness{t: t, url: amqpURL, vhost: strings.TrimPrefix(u.Path, "/"), conn: conn, pub: pub}
}

// consume runs a consumer on queue until the test ends or stop is called, whichever is first.
// Once stop returned, every delivery the consumer left unsettled is back in the queue.
func (h *harness) consume(queue string, handler broker.Handler, opts broker.ConsumerOptions) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.conn.Consume(ctx, queue, handler, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("consume: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

func (h *harness) publish(routingKey, id string, body []byte) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := h.pub.Publish(ctx, []broker.Message{{
		Exchange: catalog.Exchange(routingKey), RoutingKey: routingKey, MessageID: id,
		Type: "test.v1.Event", CorrelationID: "order-" + id, Body: body,
	}})
	if err != nil || !ok[0] {
		h.t.Fatalf("publish %s: ok=%v err=%v", id, ok, err)
	}
}

func (h *harness) depth(queue string) int {
	h.t.Helper()
	ch, err := h.conn.Channel(context.Background())
	if err != nil {
		h.t.Fatalf("channel: %v", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		h.t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// get takes one message from queue and acks it.
func (h *harness) get(queue string) amqp.Delivery {
	h.t.Helper()
	ch, err := h.conn.Channel(context.Background())
	if err != nil {
		h.t.Fatalf("channel: %v", err)
	}
	defer ch.Close()
	var d amqp.Delivery
	testenv.Eventually(h.t, 10*time.Second, "a message on "+queue, func() bool {
		var ok bool
		d, ok, err = ch.Get(queue, true)
		if err != nil {
			h.t.Fatalf("get %s: %v", queue, err)
		}
		return ok
	})
	return d
}

var sub = catalog.Subscription{Consumer: "payment", RoutingKey: catalog.OrderCreated}

func TestTopologyFollowsTheCatalog(t *testing.T) {
	t.Parallel()
	if got := sub.Queue(); got != "payment.order-created" {
		t.Errorf("queue = %q", got)
	}
	if got := sub.DeadLetterQueue(); got != "payment.order-created.dlq" {
		t.Errorf("dead-letter queue = %q", got)
	}
	if got := catalog.Exchange(catalog.ShippingFailed); got != "shipping.exchange" {
		t.Errorf("exchange = %q", got)
	}
	if n := len(catalog.SubscriptionsOf("order")); n != 7 {
		t.Errorf("order consumes %d queues, want 7", n)
	}
	h := newHarness(t)
	for _, s := range catalog.Subscriptions() {
		h.depth(s.Queue())
		h.depth(s.DeadLetterQueue())
	}
}

func TestConsumeAcksABatchAfterTheHandlerSucceeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for i := range 20 {
		h.publish(catalog.OrderCreated, string(rune('a'+i)), []byte{byte(i)})
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var maxBatch atomic.Int32
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if int32(len(batch)) > maxBatch.Load() {
			maxBatch.Store(int32(len(batch)))
		}
		for _, d := range batch {
			seen[d.MessageId] = true
		}
		return nil
	}, broker.ConsumerOptions{})
	testenv.Eventually(t, 10*time.Second, "20 messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 20
	})
	testenv.Eventually(t, 10*time.Second, "queue drained", func() bool { return h.depth(sub.Queue()) == 0 })
	if maxBatch.Load() < 2 {
		t.Errorf("20 waiting messages were never handled in a batch (largest batch %d)", maxBatch.Load())
	}
}

func TestPermanentErrorDeadLettersOnlyTheBadDeliveryWithItsReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var mu sync.Mutex
	handled := map[string]int{}
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		for _, d := range batch {
			if string(d.Body) == "poison" {
				return failure.Permanent(errors.New("undecodable payload"))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, d := range batch {
			handled[d.MessageId]++
		}
		return nil
	}, broker.ConsumerOptions{})
	h.publish(catalog.OrderCreated, "good-1", []byte("ok"))
	h.publish(catalog.OrderCreated, "bad", []byte("poison"))
	h.publish(catalog.OrderCreated, "good-2", []byte("ok"))

	dl := h.get(sub.DeadLetterQueue())
	if dl.MessageId != "bad" || string(dl.Body) != "poison" {
		t.Errorf("dead letter = %q %q, want the poison message", dl.MessageId, dl.Body)
	}
	if got := dl.Headers[broker.HeaderReason]; got != "undecodable payload" {
		t.Errorf("reason header = %v", got)
	}
	if got := dl.Headers[broker.HeaderQueue]; got != sub.Queue() {
		t.Errorf("queue header = %v", got)
	}
	testenv.Eventually(t, 10*time.Second, "good messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled["good-1"] == 1 && handled["good-2"] == 1
	})
}

func TestBatchesFormFromDeliveriesWaitingInTheQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const n = 200
	var mu sync.Mutex
	seen := map[string]bool{}
	var calls, maxBatch int
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		time.Sleep(5 * time.Millisecond) // a transaction's worth of work
		mu.Lock()
		defer mu.Unlock()
		calls++
		maxBatch = max(maxBatch, len(batch))
		for _, d := range batch {
			seen[d.MessageId] = true
		}
		return nil
	}, broker.ConsumerOptions{})
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = broker.Message{
			Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: catalog.OrderCreated,
			MessageID: fmt.Sprintf("m-%03d", i), Type: "test.v1.Event", Body: []byte("x"),
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := h.pub.Publish(ctx, msgs)
	if err != nil || slices.Contains(ok, false) {
		t.Fatalf("publish %d messages: %v", n, err)
	}
	testenv.Eventually(t, 30*time.Second, "200 messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	testenv.Eventually(t, 10*time.Second, "queue drained", func() bool { return h.depth(sub.Queue()) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if maxBatch < 2 {
		t.Errorf("%d messages were handled one at a time (%d calls): no batch formed from the waiting deliveries", n, calls)
	}
	t.Logf("%d messages in %d handler calls, largest batch %d", n, calls, maxBatch)
}

func TestRejectedDeadLettersOnlyTheNamedDeliveriesAndAcksTheRest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The first delivery holds the handler up, so that the others wait in the queue and arrive
	// together in the next batch.
	h.publish(catalog.OrderCreated, "first", []byte("ok"))
	h.publish(catalog.OrderCreated, "good-1", []byte("ok"))
	h.publish(catalog.OrderCreated, "bad", []byte("poison"))
	h.publish(catalog.OrderCreated, "good-2", []byte("ok"))
	var mu sync.Mutex
	handled := map[string]int{}
	var badInBatchOf int
	stop := h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		if batch[0].MessageId == "first" {
			time.Sleep(300 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		rejected := broker.Rejected{}
		for i, d := range batch {
			if string(d.Body) == "poison" {
				rejected[i] = errors.New("order_id: invalid UUID")
				badInBatchOf = len(batch)
				continue
			}
			handled[d.MessageId]++
		}
		if len(rejected) > 0 {
			return rejected
		}
		return nil
	}, broker.ConsumerOptions{})

	dl := h.get(sub.DeadLetterQueue())
	if dl.MessageId != "bad" || string(dl.Body) != "poison" {
		t.Errorf("dead letter = %q %q, want the rejected message", dl.MessageId, dl.Body)
	}
	if got := dl.Headers[broker.HeaderReason]; got != "order_id: invalid UUID" {
		t.Errorf("reason header = %v", got)
	}
	if got := dl.Headers[broker.HeaderQueue]; got != sub.Queue() {
		t.Errorf("queue header = %v", got)
	}
	testenv.Eventually(t, 10*time.Second, "good messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled["first"] == 1 && handled["good-1"] == 1 && handled["good-2"] == 1
	})
	// Stopping the consumer returns whatever it left unacked to the queue.
	stop()
	if n := h.depth(sub.Queue()); n != 0 {
		t.Errorf("%d deliveries left unacked", n)
	}
	if n := h.depth(sub.DeadLetterQueue()); n != 0 {
		t.Errorf("%d more dead letters, want only the rejected delivery", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range handled {
		if n != 1 {
			t.Errorf("%s handled %d times, want once: the batch around a rejected delivery is not retried", id, n)
		}
	}
	if badInBatchOf < 2 {
		t.Errorf("the rejected delivery came in a batch of %d: the test did not exercise a partial batch", badInBatchOf)
	}
}

func TestTransientErrorIsRetriedWithoutSpendingTheDeliveryLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	var redelivered atomic.Bool
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		if batch[0].Redelivered {
			redelivered.Store(true)
		}
		if calls.Add(1) <= broker.FailureLimit+2 {
			return &net_error{}
		}
		return nil
	}, broker.ConsumerOptions{})
	h.publish(catalog.OrderCreated, "flaky", []byte("x"))
	testenv.Eventually(t, 60*time.Second, "handled after the outage", func() bool {
		return calls.Load() > broker.FailureLimit+2 && h.depth(sub.Queue()) == 0
	})
	if redelivered.Load() {
		t.Error("a transient failure returned the delivery to the queue")
	}
	if n := h.depth(sub.DeadLetterQueue()); n != 0 {
		t.Errorf("dead-letter queue holds %d messages", n)
	}
}

// net_error is what a lost database connection looks like to a handler.
type net_error struct{}

func (*net_error) Error() string   { return "connection reset" }
func (*net_error) Timeout() bool   { return false }
func (*net_error) Temporary() bool { return true }

// TestDeliveryLimitEndsAPoisonLoop: a message its handler keeps failing on goes to the
// dead-letter queue after FailureLimit failures, counted by the consumer, however high the
// broker's own delivery limit is.
func TestDeliveryLimitEndsAPoisonLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	h.consume(sub.Queue(), func(context.Context, []amqp.Delivery) error {
		calls.Add(1)
		return errors.New("constraint violated")
	}, broker.ConsumerOptions{UnknownErrorTries: 1})
	h.publish(catalog.OrderCreated, "loop", []byte("x"))
	dl := h.get(sub.DeadLetterQueue())
	if dl.MessageId != "loop" {
		t.Fatalf("dead letter = %q", dl.MessageId)
	}
	if got := calls.Load(); got != broker.FailureLimit {
		t.Errorf("handled %d times, want %d", got, broker.FailureLimit)
	}
	if got := broker.Failures(dl); got != broker.FailureLimit-1 {
		t.Errorf("dead letter counts %d failures before the last, want %d", got, broker.FailureLimit-1)
	}
	reason, _ := dl.Headers[broker.HeaderReason].(string)
	if want := fmt.Sprintf("failed %d times, last: constraint violated", broker.FailureLimit); !strings.Contains(reason, want) {
		t.Errorf("reason %q does not say %q", reason, want)
	}
	// It was put back through the dead-letter exchange, but names the way it first came.
	if got := dl.Headers[broker.HeaderExchange]; got != catalog.Exchange(catalog.OrderCreated) {
		t.Errorf("dead letter names exchange %v, want %s", got, catalog.Exchange(catalog.OrderCreated))
	}
	if got := dl.Headers[broker.HeaderRoutingKey]; got != catalog.OrderCreated {
		t.Errorf("dead letter names routing key %v, want %s", got, catalog.OrderCreated)
	}
	if n := h.depth(sub.Queue()); n != 0 {
		t.Errorf("%d copies left in the queue", n)
	}
}

// TestAPanickingHandlerCountsAsAFailure: a panic in the handler is a failure like any other,
// not a crash of the consumer; the message ends in the dead-letter queue.
func TestAPanickingHandlerCountsAsAFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	h.consume(sub.Queue(), func(context.Context, []amqp.Delivery) error {
		calls.Add(1)
		panic("nil map")
	}, broker.ConsumerOptions{UnknownErrorTries: 1, FailureLimit: 2})
	h.publish(catalog.OrderCreated, "panics", []byte("x"))
	dl := h.get(sub.DeadLetterQueue())
	if reason, _ := dl.Headers[broker.HeaderReason].(string); !strings.Contains(reason, "handler panicked: nil map") {
		t.Errorf("reason %q", reason)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("handled %d times, want 2", got)
	}
}

// die takes the next delivery of queue on a channel of its own and closes the channel with it
// unacked, n times: consumers dying with the message in hand, each raising the broker's
// delivery count.
func (h *harness) die(queue string, n int) {
	h.t.Helper()
	for i := range n {
		ch, err := h.conn.Channel(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		ds, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			h.t.Fatal(err)
		}
		select {
		case <-ds:
		case <-time.After(10 * time.Second):
			h.t.Fatalf("death %d: no delivery", i)
		}
		ch.Close()
	}
}

// TestDeliveriesHeldByDyingConsumersSpendNoFailure: a message that consumers held when they
// died comes back with the broker's delivery count raised each time; the consumer renews it
// before the queue's delivery limit could dead-letter it, counting no failure, and when the
// handler then fails once it goes back to the queue with one failure and takes effect on the
// next try.
func TestDeliveriesHeldByDyingConsumersSpendNoFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(catalog.OrderCreated, "held", []byte("x"))
	const deaths = broker.DeliveryLimit - 1 // one more would be dead-lettered by the broker
	h.die(sub.Queue(), deaths)
	var mu sync.Mutex
	var seen []amqp.Delivery
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, batch...)
		if len(seen) == 1 {
			return errors.New("constraint violated")
		}
		return nil
	}, broker.ConsumerOptions{UnknownErrorTries: 1})
	testenv.Eventually(t, 30*time.Second, "handled on the second try", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 2 && h.depth(sub.Queue()) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	// The handler saw the renewed copy, never the one the broker had counted deaths times.
	for i, d := range seen {
		if n, _ := d.Headers["x-delivery-count"].(int64); n != 0 {
			t.Errorf("try %d carries x-delivery-count %d: a copy put back must start its own count", i, n)
		}
		if got := broker.Redeliveries(d); got < deaths {
			t.Errorf("try %d carries %d redeliveries, want at least %d: the deaths were not carried", i, got, deaths)
		}
	}
	if got := broker.Failures(seen[0]); got != 0 {
		t.Errorf("first handled with %d failures, want 0", got)
	}
	if got := broker.Failures(seen[1]); got != 1 {
		t.Errorf("second try carries %d failures, want 1", got)
	}
	if n := h.depth(sub.DeadLetterQueue()); n != 0 {
		t.Errorf("dead-letter queue holds %d messages", n)
	}
}

// TestAMessageThatKillsEveryConsumerEndsInTheDeadLetterQueue: renewals carry the broker's
// counts, and a message delivered RedeliveryLimit times in all is dead-lettered unhandled.
func TestAMessageThatKillsEveryConsumerEndsInTheDeadLetterQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := h.pub.Publish(ctx, []broker.Message{{
		Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: catalog.OrderCreated, MessageID: "killer",
		Type: "test.v1.Event", Body: []byte("x"),
		Headers: amqp.Table{broker.HeaderRedeliveries: int64(broker.RedeliveryLimit - broker.RenewAt)},
	}})
	if err != nil || !ok[0] {
		t.Fatalf("publish: ok=%v err=%v", ok, err)
	}
	h.die(sub.Queue(), broker.RenewAt)
	var calls atomic.Int32
	h.consume(sub.Queue(), func(context.Context, []amqp.Delivery) error {
		calls.Add(1)
		return nil
	}, broker.ConsumerOptions{})
	dl := h.get(sub.DeadLetterQueue())
	if reason, _ := dl.Headers[broker.HeaderReason].(string); !strings.Contains(reason, "without its handler ever finishing") {
		t.Errorf("reason %q", reason)
	}
	if got := calls.Load(); got != 0 {
		t.Errorf("handled %d times, want never", got)
	}
}

func TestPublisherReportsUnroutableMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := h.pub.Publish(ctx, []broker.Message{
		{Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: catalog.OrderCreated, MessageID: "routed", Body: []byte("x")},
		{Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: "order.nobody-listens", MessageID: "lost", Body: []byte("x")},
	})
	if err == nil {
		t.Error("no error for an unroutable message")
	}
	if !ok[0] || ok[1] {
		t.Errorf("ok = %v, want [true false]", ok)
	}
}

func TestConsumerAndPublisherSurviveALostConnection(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var count atomic.Int32
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		count.Add(int32(len(batch)))
		return nil
	}, broker.ConsumerOptions{})
	h.publish(catalog.OrderCreated, "before", []byte("x"))
	testenv.Eventually(t, 10*time.Second, "first message", func() bool { return count.Load() == 1 })

	testenv.CloseConnections(t, h.url)
	testenv.Eventually(t, 30*time.Second, "reconnected", h.conn.Connected)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ok, err := h.pub.Publish(ctx, []broker.Message{{Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: catalog.OrderCreated, MessageID: "after", Body: []byte("x")}})
		if err == nil && ok[0] {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("publish after reconnect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	testenv.Eventually(t, 30*time.Second, "message after reconnect consumed", func() bool { return count.Load() == 2 })
}

func TestDeadLetterDepthIsExported(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := h.pub.Publish(ctx, []broker.Message{{Exchange: broker.DeadLetterExchange, RoutingKey: sub.Queue(), MessageID: "dead", Body: []byte("x")}})
	if err != nil || !ok[0] {
		t.Fatalf("publish dead letter: %v", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	go h.conn.WatchDeadLetters(wctx, []catalog.Subscription{sub}, 50*time.Millisecond)
	testenv.Eventually(t, 10*time.Second, "dead-letter depth 1", func() bool {
		families, err := prometheus.DefaultGatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "ordersaga_dead_letter_depth" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == sub.DeadLetterQueue() && m.GetGauge().GetValue() == 1 {
						return true
					}
				}
			}
		}
		return false
	})
}

// A cluster's nodes in one AMQP_URL: a node that does not answer is skipped.
func TestDialFailsOverToTheNextNode(t *testing.T) {
	t.Parallel()
	real := testenv.VHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, "amqp://guest:guest@127.0.0.1:1/, "+real, testenv.Logger(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if !conn.Connected() {
		t.Fatal("not connected through the second node")
	}
	if _, err := broker.Dial(ctx, " , ", testenv.Logger(t)); err == nil {
		t.Fatal("dialled an empty address list")
	}
}

// An operator deletes a queue under a running consumer: the consumer declares it again and
// goes on consuming.
func TestConsumerRedeclaresADeletedQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var count atomic.Int32
	h.consume(sub.Queue(), func(_ context.Context, batch []amqp.Delivery) error {
		count.Add(int32(len(batch)))
		return nil
	}, broker.ConsumerOptions{})
	h.publish(catalog.OrderCreated, "before", []byte("x"))
	testenv.Eventually(t, 10*time.Second, "first message", func() bool { return count.Load() == 1 })

	ch, err := h.conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete(sub.Queue(), false, false, false); err != nil {
		t.Fatalf("delete queue: %v", err)
	}
	ch.Close()
	// Routed again once the queue and its binding are back.
	testenv.Eventually(t, 30*time.Second, "queue declared and bound again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ok, err := h.pub.Publish(ctx, []broker.Message{{Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: catalog.OrderCreated,
			MessageID: "after", Type: "test.v1.Event", Body: []byte("x")}})
		return err == nil && ok[0]
	})
	testenv.Eventually(t, 30*time.Second, "message after the delete consumed", func() bool { return count.Load() == 2 })
}

// The broker refuses configure rights (a permissions change during a deploy): Dial keeps trying
// and succeeds by itself once the rights are back, instead of giving up for good.
func TestDialRetriesARefusedTopologyDeclaration(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.VHost(t)
	setPerms := func(configure string) { setPermissions(t, amqpURL, configure, ".*") }
	setPerms("^$") // nothing may be declared
	dialed := make(chan error, 1)
	var conn atomic.Pointer[broker.Conn]
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := broker.Dial(ctx, amqpURL, testenv.Logger(t))
		conn.Store(c)
		dialed <- err
	}()
	select {
	case err := <-dialed:
		t.Fatalf("dial returned while declaring was refused: %v", err)
	case <-time.After(3 * time.Second):
	}
	setPerms(".*")
	select {
	case err := <-dialed:
		if err != nil {
			t.Fatalf("dial after the rights came back: %v", err)
		}
		defer conn.Load().Close()
	case <-time.After(45 * time.Second):
		t.Fatal("dial did not recover once the rights were back")
	}
	if !conn.Load().Connected() {
		t.Error("not connected")
	}
}

// TestDropWhenBlockedKeepsAnUnblockedConnection checks that the end of the context given to
// DropWhenBlocked leaves a connection the broker does not block alone: a stopping service still
// flushes and acks through it. (The drop of a blocked one needs a broker under an alarm: the
// faults suite's TestFaultBrokerAlarm runs one on a scratch node.)
func TestDropWhenBlockedKeepsAnUnblockedConnection(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	h.conn.DropWhenBlocked(ctx)
	cancel()
	time.Sleep(200 * time.Millisecond) // let the connection see the end
	if !h.conn.Connected() {
		t.Fatal("an unblocked connection was dropped")
	}
	h.publish(catalog.OrderCreated, "after-stop", []byte("x"))
	if err := h.conn.Check(context.Background()); err != nil {
		t.Fatalf("check: %v", err)
	}
}

// A publish to an exchange that does not exist (deleted under the service) makes the broker
// close the channel, which settles the confirms as nacks: Publish must report it as an error,
// so that the relay declares the topology again before retrying, and publish on a new channel.
func TestPublisherReportsAMissingExchange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := h.pub.Publish(ctx, []broker.Message{{Exchange: "no.such.exchange", RoutingKey: catalog.OrderCreated, MessageID: "lost", Body: []byte("x")}})
	if err == nil || ok[0] {
		t.Errorf("publish to a missing exchange: ok = %v, err = %v; want not ok and an error", ok, err)
	}
	ok, err = h.pub.Publish(ctx, []broker.Message{{Exchange: catalog.Exchange(catalog.OrderCreated), RoutingKey: catalog.OrderCreated, MessageID: "routed", Body: []byte("x")}})
	if err != nil || !ok[0] {
		t.Errorf("publish after the channel closed: ok = %v, err = %v; want ok", ok, err)
	}
}

// A consumer the broker refuses (read rights revoked) is not ready while it retries, and ready
// again by itself once the rights are back.
func TestConsumerCheckFailsWhileTheBrokerRefusesIt(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.VHost(t)
	setRead := func(read string) { setPermissions(t, amqpURL, ".*", read) }
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, amqpURL, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queue := catalog.Subscriptions()[0].Queue()
	cons := conn.Consumer(queue, func(context.Context, []amqp.Delivery) error { return nil }, broker.ConsumerOptions{})
	if cons.Check(ctx) == nil {
		t.Error("ready before it ever subscribed")
	}
	setRead("^$") // nothing may be consumed
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	time.Sleep(3 * time.Second)
	if err := cons.Check(ctx); err == nil {
		t.Error("ready while the broker refuses the subscription")
	} else {
		t.Logf("not ready: %v", err)
	}
	setRead(".*")
	testenv.Eventually(t, 30*time.Second, "consumer ready once the rights are back", func() bool { return cons.Check(ctx) == nil })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// setPermissions sets the rights of amqpURL's user on its virtual host: configure and read as
// given, write always.
func setPermissions(t *testing.T, amqpURL, configure, read string) {
	t.Helper()
	u, _ := url.Parse(amqpURL)
	vhost, user := strings.TrimPrefix(u.Path, "/"), u.User.Username()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testenv.Management(ctx, http.MethodPut, "/api/permissions/"+vhost+"/"+url.PathEscape(user),
		map[string]string{"configure": configure, "write": ".*", "read": read}); err != nil {
		t.Fatal(err)
	}
}
