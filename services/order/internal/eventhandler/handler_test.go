package eventhandler_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/outgoing"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

// handlers are order-service's broker handlers, by subscription.
type handlers = map[catalog.Subscription]broker.Handler

// newHandlers registers order-service's rules on pool, their store bound by repo. The relay is
// not running: the rules publish nothing.
func newHandlers(t *testing.T, pool *pgxpool.Pool, repo *postgres.Repository) handlers {
	t.Helper()
	log := testenv.Logger(t)
	reg := rules.New[eventhandler.Store](catalog.Order)
	eventhandler.Register(reg, log)
	hs, err := unitofwork.New(reg, pool, outbox.NewRelay(pool, nil, log), log, repo.Store).Handlers()
	if err != nil {
		t.Fatalf("handlers: %v", err)
	}
	return hs
}

func setup(t *testing.T) (*postgres.Repository, handlers) {
	t.Helper()
	repo, _, hs := setupPool(t)
	return repo, hs
}

func setupPool(t *testing.T) (*postgres.Repository, *pgxpool.Pool, handlers) {
	t.Helper()
	pool := testenv.Postgres(t, "order_events", postgres.Migrations...)
	repo := postgres.NewRepository(pool)
	return repo, pool, newHandlers(t, pool, repo)
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
	if _, _, err := repo.Create(context.Background(), o, outgoing.Created(o)); err != nil {
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

func handler(t *testing.T, hs handlers, routingKey string) broker.Handler {
	t.Helper()
	fn, ok := hs[catalog.Subscription{Consumer: catalog.Order, RoutingKey: routingKey}]
	if !ok {
		t.Fatalf("no handler for %s", routingKey)
	}
	return fn
}

// rejected checks that err refuses exactly the deliveries at indexes of the batch.
func rejected(t *testing.T, err error, indexes ...int) {
	t.Helper()
	var rej broker.Rejected
	if !errors.As(err, &rej) {
		t.Fatalf("error = %v, want deliveries %v rejected", err, indexes)
	}
	if len(rej) != len(indexes) {
		t.Fatalf("rejected %v, want deliveries %v", rej, indexes)
	}
	for _, i := range indexes {
		if rej[i] == nil {
			t.Fatalf("rejected %v, want delivery %d among them", rej, i)
		}
	}
}

func TestEverySubscriptionHasAHandler(t *testing.T) {
	t.Parallel()
	// Handlers touches no database.
	hs := newHandlers(t, nil, postgres.NewRepository(nil))
	subs := catalog.SubscriptionsOf(catalog.Order)
	if len(subs) != 7 || len(hs) != len(subs) {
		t.Fatalf("%d subscriptions, %d handlers", len(subs), len(hs))
	}
	for _, sub := range subs {
		if hs[sub] == nil {
			t.Errorf("no handler for %s", sub.Queue())
		}
	}
	if _, ok := hs[catalog.Subscription{Consumer: catalog.Order, RoutingKey: catalog.OrderCreated}]; ok {
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
	scheduled := delivery(t, catalog.ShippingScheduled, &shippingv1.ShippingScheduled{
		EventId: uuid.NewString(), OrderId: strings.ToUpper(id), OccurTime: now, TrackingCode: "TRK-AB12CD34"})
	if err := handler(t, h, catalog.ShippingScheduled)(ctx, []amqp.Delivery{scheduled, scheduled}); err != nil {
		t.Fatal(err)
	}
	reserved := delivery(t, catalog.InventoryReserved, &inventoryv1.InventoryReserved{EventId: uuid.NewString(), OrderId: id, OccurTime: now})
	if err := handler(t, h, catalog.InventoryReserved)(ctx, []amqp.Delivery{reserved}); err != nil {
		t.Fatal(err)
	}
	approved := delivery(t, catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: id, OccurTime: now})
	if err := handler(t, h, catalog.PaymentApproved)(ctx, []amqp.Delivery{approved}); err != nil {
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
		{catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: id}},
		{catalog.InventoryReserved, &inventoryv1.InventoryReserved{EventId: uuid.NewString(), OrderId: id}},
		{catalog.ShippingFailed, &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: id, Reason: "carrier does not deliver to AQ"}},
		{catalog.PaymentReversed, &paymentv1.PaymentReversed{EventId: uuid.NewString(), OrderId: id, Reason: "compensation"}},
		{catalog.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: id, Reason: "late"}},
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
	d := delivery(t, catalog.PaymentFailed, &paymentv1.PaymentFailed{EventId: uuid.NewString(), OrderId: id, Reason: "card declined"})
	if err := handler(t, h, catalog.PaymentFailed)(ctx, []amqp.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	o, _ := repo.Get(ctx, id)
	if o.Status() != order.StatusPaymentFailed || o.FailureReason() != "card declined" {
		t.Errorf("order %s %q", o.Status(), o.FailureReason())
	}
}

func TestBadEventsAreRejected(t *testing.T) {
	t.Parallel()
	repo, h := setup(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	garbage := amqp.Delivery{Type: "payment.v1.PaymentApproved", Body: []byte{0xff, 0xff, 0xff}}
	for name, tc := range map[string]struct {
		key string
		d   amqp.Delivery
	}{
		"undecodable":    {catalog.PaymentApproved, garbage},
		"wrong type":     {catalog.PaymentApproved, delivery(t, catalog.PaymentApproved, &paymentv1.PaymentFailed{EventId: uuid.NewString(), OrderId: id})},
		"bad event id":   {catalog.PaymentApproved, delivery(t, catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: "x", OrderId: id})},
		"unknown order":  {catalog.PaymentApproved, delivery(t, catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: uuid.NewString()})},
		"no tracking":    {catalog.ShippingScheduled, delivery(t, catalog.ShippingScheduled, &shippingv1.ShippingScheduled{EventId: uuid.NewString(), OrderId: id})},
		"missing order":  {catalog.InventoryFailed, delivery(t, catalog.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString()})},
		"empty delivery": {catalog.ShippingFailed, amqp.Delivery{}},
	} {
		t.Run(name, func(t *testing.T) {
			rejected(t, handler(t, h, tc.key)(ctx, []amqp.Delivery{tc.d}), 0)
		})
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
	subs := catalog.SubscriptionsOf(catalog.Order)
	for _, sub := range subs {
		fn := h[sub]
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
		ev  rules.Message
	}{
		{catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: happy}},
		{catalog.InventoryReserved, &inventoryv1.InventoryReserved{EventId: uuid.NewString(), OrderId: happy}},
		{catalog.ShippingScheduled, &shippingv1.ShippingScheduled{EventId: uuid.NewString(), OrderId: happy, TrackingCode: "TRK-00000001"}},
		{catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: sad}},
		{catalog.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: sad, Reason: "out of stock"}},
		{catalog.PaymentReversed, &paymentv1.PaymentReversed{EventId: uuid.NewString(), OrderId: sad}},
	} {
		body, _ := proto.Marshal(ev.ev)
		msgs = append(msgs, broker.Message{
			Exchange: catalog.Exchange(ev.key), RoutingKey: ev.key, MessageID: ev.ev.GetEventId(),
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

func TestAnEventForAnUnknownOrderIsRejectedAlone(t *testing.T) {
	t.Parallel()
	repo, pool, h := setupPool(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	unknown := uuid.NewString()
	batch := []amqp.Delivery{
		delivery(t, catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: unknown}),
		delivery(t, catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: id}),
	}
	rejected(t, handler(t, h, catalog.PaymentApproved)(ctx, batch), 0)
	o, err := repo.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status() != order.StatusPaymentApproved || len(o.History()) != 2 {
		t.Errorf("order %s %+v, want PAYMENT_APPROVED", o.Status(), o.History())
	}
	// Only the event that took effect is claimed: the rejected one left no trace.
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d events claimed (%v), want 1", n, err)
	}
}

func TestARedeliveredBatchChangesNothing(t *testing.T) {
	t.Parallel()
	repo, pool, h := setupPool(t)
	ctx := context.Background()
	id := placeOrder(t, repo)
	failed := handler(t, h, catalog.InventoryFailed)
	batch := []amqp.Delivery{
		delivery(t, catalog.InventoryFailed, &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: id, Reason: "out of stock"}),
	}
	if err := handler(t, h, catalog.PaymentApproved)(ctx, []amqp.Delivery{
		delivery(t, catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: uuid.NewString(), OrderId: id}),
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := failed(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	o, _ := repo.Get(ctx, id)
	if o.Status() != order.StatusInventoryFailed || o.FailureReason() != "out of stock" || len(o.History()) != 3 {
		t.Errorf("order %s %q %+v", o.Status(), o.FailureReason(), o.History())
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE queue = 'order.inventory-failed'").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d inventory.failed claimed (%v), want 1", n, err)
	}
}
