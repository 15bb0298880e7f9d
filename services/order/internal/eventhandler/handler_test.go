package eventhandler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

func setup(t *testing.T) (*postgres.Repository, *eventhandler.Handlers) {
	t.Helper()
	pool := testenv.Postgres(t, "order_events", postgres.Migrations...)
	repo := postgres.NewRepository(pool)
	return repo, eventhandler.New(repo, testenv.Logger(t))
}

func placeOrder(t *testing.T, repo *postgres.Repository) string {
	t.Helper()
	o, err := order.New(order.Params{
		CustomerID:    uuid.NewString(),
		PaymentMethod: "credit_card",
		Items:         []order.Item{{ProductID: "00000000-0000-0000-0000-000000000001", Quantity: 1, UnitPrice: 990}},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.ID()
}

func delivery(t *testing.T, routingKey string, ev proto.Message) amqp.Delivery {
	t.Helper()
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return amqp.Delivery{
		RoutingKey: routingKey,
		Type:       string(ev.ProtoReflect().Descriptor().FullName()),
		Body:       body,
	}
}

func handler(t *testing.T, h *eventhandler.Handlers, routingKey string) broker.Handler {
	t.Helper()
	fn, err := h.For(broker.Subscription{Consumer: "order", RoutingKey: routingKey})
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

func TestEverySubscriptionHasAHandler(t *testing.T) {
	t.Parallel()
	h := eventhandler.New(nil, testenv.Logger(t))
	subs := broker.SubscriptionsOf("order")
	if len(subs) != 7 {
		t.Fatalf("%d subscriptions", len(subs))
	}
	for _, sub := range subs {
		if _, err := h.For(sub); err != nil {
			t.Error(err)
		}
	}
	if _, err := h.For(broker.Subscription{Consumer: "order", RoutingKey: broker.OrderCreated}); err == nil {
		t.Error("order.created accepted")
	}
}

func TestHappyPathOutOfOrder(t *testing.T) {
	t.Parallel()
	repo, h := setup(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	now := timestamppb.Now()

	// The saga's results arrive in reverse order, and one is redelivered.
	scheduled := delivery(t, broker.ShippingScheduled, &shippingv1.ShippingScheduled{
		EventId: uuid.NewString(), OrderId: strings.ToUpper(id), OccurTime: now, TrackingCode: "TRK-AB12CD34"})
	if err := handler(t, h, broker.ShippingScheduled)(ctx, []amqp.Delivery{scheduled, scheduled}); err != nil {
		t.Fatal(err)
	}
	reserved := delivery(t, broker.InventoryReserved, &inventoryv1.InventoryReserved{EventId: uuid.NewString(), OrderId: id, OccurTime: now})
	if err := handler(t, h, broker.InventoryReserved)(ctx, []amqp.Delivery{reserved}); err != nil {
		t.Fatal(err)
	}
	approved := delivery(t, broker.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: id, OccurTime: now})
	if err := handler(t, h, broker.PaymentApproved)(ctx, []amqp.Delivery{approved}); err != nil {
		t.Fatal(err)
	}
	o, err := repo.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status() != order.StatusConfirmed || o.TrackingCode() != "TRK-AB12CD34" || len(o.History()) != 2 {
		t.Errorf("order %s %q %+v", o.Status(), o.TrackingCode(), o.History())
	}
}

func TestCompensation(t *testing.T) {
	t.Parallel()
	repo, h := setup(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	for _, step := range []struct {
		key string
		ev  proto.Message
	}{
		{broker.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: id}},
		{broker.InventoryReserved, &inventoryv1.InventoryReserved{EventId: uuid.NewString(), OrderId: id}},
		{broker.ShippingFailed, &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: id, Reason: "carrier does not deliver to AQ"}},
		{broker.PaymentReversed, &paymentv1.PaymentReversed{EventId: uuid.NewString(), OrderId: id, Reason: "compensation"}},
		{broker.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: id, Reason: "late"}},
	} {
		if err := handler(t, h, step.key)(ctx, []amqp.Delivery{delivery(t, step.key, step.ev)}); err != nil {
			t.Fatalf("%s: %v", step.key, err)
		}
	}
	o, _ := repo.Get(ctx, id)
	if o.Status() != order.StatusCancelled || o.FailureReason() != "carrier does not deliver to AQ" || len(o.History()) != 5 {
		t.Errorf("order %s %q %+v", o.Status(), o.FailureReason(), o.History())
	}
}

func TestPaymentFailed(t *testing.T) {
	t.Parallel()
	repo, h := setup(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	d := delivery(t, broker.PaymentFailed, &paymentv1.PaymentFailed{EventId: uuid.NewString(), OrderId: id, Reason: "card declined"})
	if err := handler(t, h, broker.PaymentFailed)(ctx, []amqp.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	o, _ := repo.Get(ctx, id)
	if o.Status() != order.StatusPaymentFailed || o.FailureReason() != "card declined" {
		t.Errorf("order %s %q", o.Status(), o.FailureReason())
	}
}

func TestBadEventsArePermanent(t *testing.T) {
	t.Parallel()
	repo, h := setup(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	garbage := amqp.Delivery{Type: "payment.v1.PaymentApproved", Body: []byte{0xff, 0xff, 0xff}}
	for name, tc := range map[string]struct {
		key string
		d   amqp.Delivery
	}{
		"undecodable":    {broker.PaymentApproved, garbage},
		"wrong type":     {broker.PaymentApproved, delivery(t, broker.PaymentApproved, &paymentv1.PaymentFailed{EventId: uuid.NewString(), OrderId: id})},
		"bad event id":   {broker.PaymentApproved, delivery(t, broker.PaymentApproved, &paymentv1.PaymentApproved{EventId: "x", OrderId: id})},
		"unknown order":  {broker.PaymentApproved, delivery(t, broker.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: uuid.NewString()})},
		"no tracking":    {broker.ShippingScheduled, delivery(t, broker.ShippingScheduled, &shippingv1.ShippingScheduled{EventId: uuid.NewString(), OrderId: id})},
		"missing order":  {broker.InventoryFailed, delivery(t, broker.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString()})},
		"empty delivery": {broker.ShippingFailed, amqp.Delivery{}},
	} {
		err := handler(t, h, tc.key)(ctx, []amqp.Delivery{tc.d})
		if !broker.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
	if o, _ := repo.Get(ctx, id); o.Status() != order.StatusPending {
		t.Errorf("status %s", o.Status())
	}
}

// TestConsumeFromBroker runs the handlers behind real consumers, as main does.
func TestConsumeFromBroker(t *testing.T) {
	t.Parallel()
	repo, h := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := testenv.Logger(t)
	conn, err := broker.Dial(ctx, testenv.VHost(t), log)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	done := make(chan struct{})
	subs := broker.SubscriptionsOf("order")
	for _, sub := range subs {
		fn, err := h.For(sub)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer func() { done <- struct{}{} }()
			conn.Consume(ctx, sub.Queue(), fn, broker.ConsumerOptions{})
		}()
	}
	defer func() {
		cancel()
		timeout := time.After(30 * time.Second)
		for range subs {
			select {
			case <-done:
			case <-timeout:
				t.Error("consumers did not stop within 30s of their context ending")
				return
			}
		}
	}()

	happy, sad := placeOrder(t, repo), placeOrder(t, repo)
	var msgs []broker.Message
	for _, ev := range []struct {
		key string
		ev  broker.Event
	}{
		{broker.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: happy}},
		{broker.InventoryReserved, &inventoryv1.InventoryReserved{EventId: uuid.NewString(), OrderId: happy}},
		{broker.ShippingScheduled, &shippingv1.ShippingScheduled{EventId: uuid.NewString(), OrderId: happy, TrackingCode: "TRK-00000001"}},
		{broker.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: sad}},
		{broker.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: sad, Reason: "out of stock"}},
		{broker.PaymentReversed, &paymentv1.PaymentReversed{EventId: uuid.NewString(), OrderId: sad}},
	} {
		body, _ := proto.Marshal(ev.ev)
		msgs = append(msgs, broker.Message{
			Exchange: broker.ExchangeFor(ev.key), RoutingKey: ev.key, MessageID: ev.ev.GetEventId(),
			Type: string(ev.ev.ProtoReflect().Descriptor().FullName()), CorrelationID: ev.ev.GetOrderId(), Body: body,
		})
	}
	pub := broker.NewPublisher(conn)
	defer pub.Close()
	if ok, err := pub.Publish(ctx, msgs); err != nil || len(ok) != len(msgs) {
		t.Fatalf("publish: %v %v", ok, err)
	}
	testenv.Eventually(t, 15*time.Second, "both sagas to end", func() bool {
		a, _ := repo.Get(ctx, happy)
		b, _ := repo.Get(ctx, sad)
		return a.Status() == order.StatusConfirmed && b.Status() == order.StatusCancelled
	})
}
