package eventhandler_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

const limitMinor = 1_000_000 // 10000.00

// handlers are payment-service's broker handlers, one per queue it consumes.
type handlers struct {
	OrderCreated, InventoryFailed, InventoryReleased, OrderCancelled broker.Handler
}

// setup returns the handlers of payment-service on a fresh database. Their relay is not
// running: what they publish stays in the outbox table, where the tests read it.
func setup(t *testing.T) (*handlers, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t, "payment", postgres.Migrations...)
	return newHandlers(t, pool, outbox.NewRelay(pool, nil, testenv.Logger(t))), pool
}

// newHandlers returns the handlers of payment-service on pool, handing what they commit to relay.
func newHandlers(t *testing.T, pool *pgxpool.Pool, relay *outbox.Relay) *handlers {
	t.Helper()
	gateway, err := payment.NewGateway(limitMinor, 0, func() float64 { return 0.5 })
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.Logger(t)
	reg := rules.New[eventhandler.Store](catalog.Payment)
	eventhandler.Register(reg, gateway, log)
	byQueue, err := unitofwork.New(reg, pool, relay, log, postgres.NewStore).Handlers()
	if err != nil {
		t.Fatalf("handlers: %v", err)
	}
	of := func(routingKey string) broker.Handler {
		h, ok := byQueue[catalog.Subscription{Consumer: catalog.Payment, RoutingKey: routingKey}]
		if !ok {
			t.Fatalf("no handler for %s", routingKey)
		}
		return h
	}
	return &handlers{
		OrderCreated:      of(catalog.OrderCreated),
		InventoryFailed:   of(catalog.InventoryFailed),
		InventoryReleased: of(catalog.InventoryReleased),
		OrderCancelled:    of(catalog.OrderCancelled),
	}
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

func delivery(t *testing.T, ev rules.Message) amqp.Delivery {
	t.Helper()
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return amqp.Delivery{
		MessageId:     ev.GetEventId(),
		CorrelationId: ev.GetOrderId(),
		Type:          string(ev.ProtoReflect().Descriptor().FullName()),
		ContentType:   broker.ContentTypeProtobuf,
		Body:          body,
	}
}

func orderCreated(orderID, method string, items ...*orderv1.OrderLine) *orderv1.OrderCreated {
	var total int64
	for _, it := range items {
		total += int64(it.GetQuantity()) * it.GetUnitPriceMinor()
	}
	return &orderv1.OrderCreated{
		EventId:       uuid.NewString(),
		OrderId:       orderID,
		OccurTime:     timestamppb.Now(),
		CustomerId:    uuid.NewString(),
		PaymentMethod: method,
		Items:         items,
		TotalMinor:    total,
		CountryCode:   "BR",
	}
}

func line(quantity int32, unitPriceMinor int64) *orderv1.OrderLine {
	return &orderv1.OrderLine{ProductId: uuid.NewString(), Quantity: quantity, UnitPriceMinor: unitPriceMinor}
}

type paymentRow struct {
	ID, Method, Status, Reason string
	AmountMinor                int64
}

// payments returns the payments of an order (never more than one if all is well).
func payments(t *testing.T, pool *pgxpool.Pool, orderID string) []paymentRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT id::text, method, status, COALESCE(reason, ''), amount_minor FROM payments WHERE order_id = $1`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (p paymentRow, err error) {
		err = row.Scan(&p.ID, &p.Method, &p.Status, &p.Reason, &p.AmountMinor)
		return p, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func onePayment(t *testing.T, pool *pgxpool.Pool, orderID string) paymentRow {
	t.Helper()
	got := payments(t, pool, orderID)
	if len(got) != 1 {
		t.Fatalf("order %s has %d payments, want 1", orderID, len(got))
	}
	return got[0]
}

type outboxRow struct {
	EventID, Exchange, RoutingKey, MessageType, CorrelationID string
	Body                                                      []byte
}

// outboxOf returns the outbox rows about an order, oldest first.
func outboxOf(t *testing.T, pool *pgxpool.Pool, orderID string) []outboxRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT event_id::text, exchange, routing_key, message_type, correlation_id, body
		FROM outbox WHERE correlation_id = $1 ORDER BY id`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (o outboxRow, err error) {
		err = row.Scan(&o.EventID, &o.Exchange, &o.RoutingKey, &o.MessageType, &o.CorrelationID, &o.Body)
		return o, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// decodeOutbox checks an outbox row's envelope and decodes its body into ev.
func decodeOutbox(t *testing.T, row outboxRow, routingKey string, ev rules.Message) {
	t.Helper()
	if row.RoutingKey != routingKey || row.Exchange != catalog.Exchange(catalog.PaymentApproved) {
		t.Fatalf("outbox row on %s/%s, want %s/%s", row.Exchange, row.RoutingKey, catalog.Exchange(catalog.PaymentApproved), routingKey)
	}
	if want := string(ev.ProtoReflect().Descriptor().FullName()); row.MessageType != want {
		t.Fatalf("outbox message type %s, want %s", row.MessageType, want)
	}
	if err := proto.Unmarshal(row.Body, ev); err != nil {
		t.Fatalf("decode outbox body: %v", err)
	}
	if ev.GetEventId() != row.EventID || ev.GetOrderId() != row.CorrelationID {
		t.Fatalf("outbox ids %s/%s do not match body %s/%s", row.EventID, row.CorrelationID, ev.GetEventId(), ev.GetOrderId())
	}
}

func handle(t *testing.T, h broker.Handler, ds ...amqp.Delivery) {
	t.Helper()
	if err := h(context.Background(), ds); err != nil {
		t.Fatalf("handler: %v", err)
	}
}

func TestOrderCreatedApproved(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	ev := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(2, 4990), line(1, 1000))
	handle(t, h.OrderCreated, delivery(t, ev))

	p := onePayment(t, pool, ev.OrderId)
	if p.Status != "APPROVED" || p.AmountMinor != 10980 || p.Method != payment.MethodCreditCard || p.Reason != "" {
		t.Errorf("payment = %+v", p)
	}
	out := outboxOf(t, pool, ev.OrderId)
	if len(out) != 1 {
		t.Fatalf("%d outbox rows, want 1", len(out))
	}
	var approved paymentv1.PaymentApproved
	decodeOutbox(t, out[0], catalog.PaymentApproved, &approved)
	if approved.PaymentId != p.ID || approved.AmountMinor != 10980 || approved.CountryCode != "BR" {
		t.Errorf("payment.approved = %v", &approved)
	}
	if len(approved.Items) != 2 || !proto.Equal(approved.Items[0], ev.Items[0]) || !proto.Equal(approved.Items[1], ev.Items[1]) {
		t.Errorf("payment.approved items = %v, want %v", approved.Items, ev.Items)
	}
	if approved.OccurTime == nil {
		t.Error("payment.approved has no occur_time")
	}
}

func TestOrderCreatedDeclined(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		items      []*orderv1.OrderLine
		wantReason string
	}{
		{"declined card", payment.MethodDeclinedCard, []*orderv1.OrderLine{line(1, 4990)}, "card declined"},
		{"over the limit", payment.MethodCreditCard, []*orderv1.OrderLine{line(3, 400_000)}, "amount 12000.00 exceeds limit 10000.00"},
		{"unknown method", "cash", []*orderv1.OrderLine{line(1, 4990)}, `unsupported payment method "cash"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, pool := setup(t)
			ev := orderCreated(uuid.NewString(), tt.method, tt.items...)
			handle(t, h.OrderCreated, delivery(t, ev))

			p := onePayment(t, pool, ev.OrderId)
			if p.Status != "DECLINED" || p.Reason != tt.wantReason || p.AmountMinor != ev.TotalMinor {
				t.Errorf("payment = %+v, want DECLINED %q", p, tt.wantReason)
			}
			out := outboxOf(t, pool, ev.OrderId)
			if len(out) != 1 {
				t.Fatalf("%d outbox rows, want 1", len(out))
			}
			var failed paymentv1.PaymentFailed
			decodeOutbox(t, out[0], catalog.PaymentFailed, &failed)
			if failed.Reason != tt.wantReason || failed.PaymentId != p.ID {
				t.Errorf("payment.failed = %v", &failed)
			}
		})
	}
}

func TestOrderCreatedDuplicates(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	ev := orderCreated(uuid.NewString(), payment.MethodDebitCard, line(1, 4990))
	d := delivery(t, ev)
	// The same event twice in one batch, then redelivered, then a second event for the same
	// order (which this time would be declined): the order keeps its first payment.
	handle(t, h.OrderCreated, d, d)
	handle(t, h.OrderCreated, d)
	again := orderCreated(ev.OrderId, payment.MethodDeclinedCard, line(1, 4990))
	handle(t, h.OrderCreated, delivery(t, again))

	if p := onePayment(t, pool, ev.OrderId); p.Status != "APPROVED" {
		t.Errorf("payment = %+v, want the first, approved", p)
	}
	if out := outboxOf(t, pool, ev.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.PaymentApproved {
		t.Errorf("outbox = %+v, want one payment.approved", out)
	}
}

func TestOrderCreatedSameOrderTwiceInBatch(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	orderID := uuid.NewString()
	first := orderCreated(orderID, payment.MethodCreditCard, line(1, 4990))
	second := orderCreated(orderID, payment.MethodCreditCard, line(1, 4990))
	handle(t, h.OrderCreated, delivery(t, first), delivery(t, second))

	onePayment(t, pool, orderID)
	if out := outboxOf(t, pool, orderID); len(out) != 1 {
		t.Errorf("%d outbox rows, want 1", len(out))
	}
}

func TestOrderCreatedBatchOfTwo(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	ok := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(1, 4990))
	declined := orderCreated(uuid.NewString(), payment.MethodDeclinedCard, line(2, 100))
	handle(t, h.OrderCreated, delivery(t, ok), delivery(t, declined))

	if p := onePayment(t, pool, ok.OrderId); p.Status != "APPROVED" {
		t.Errorf("first payment = %+v", p)
	}
	if p := onePayment(t, pool, declined.OrderId); p.Status != "DECLINED" {
		t.Errorf("second payment = %+v", p)
	}
	if out := outboxOf(t, pool, ok.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.PaymentApproved {
		t.Errorf("outbox of first = %+v", out)
	}
	if out := outboxOf(t, pool, declined.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.PaymentFailed {
		t.Errorf("outbox of second = %+v", out)
	}
}

func TestOrderCreatedInvalid(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	tests := []struct {
		name     string
		event    func(*orderv1.OrderCreated)
		delivery func(*amqp.Delivery)
	}{
		{"no items", func(ev *orderv1.OrderCreated) { ev.Items = nil }, nil},
		{"no payment method", func(ev *orderv1.OrderCreated) { ev.PaymentMethod = "" }, nil},
		{"bad product id", func(ev *orderv1.OrderCreated) { ev.Items[0].ProductId = "x" }, nil},
		{"zero quantity", func(ev *orderv1.OrderCreated) { ev.Items[0].Quantity = 0 }, nil},
		{"negative total", func(ev *orderv1.OrderCreated) { ev.TotalMinor = -1 }, nil},
		{"bad event id", func(ev *orderv1.OrderCreated) { ev.EventId = "" }, nil},
		{"wrong type", nil, func(d *amqp.Delivery) { d.Type = "order.v1.Order" }},
		{"garbage body", nil, func(d *amqp.Delivery) { d.Body = []byte{0xff, 0xff} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(1, 4990))
			if tt.event != nil {
				tt.event(ev)
			}
			d := delivery(t, ev)
			if tt.delivery != nil {
				tt.delivery(&d)
			}
			// Refused on its own, while the good event of the same batch takes effect.
			good := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(1, 4990))
			err := h.OrderCreated(context.Background(), []amqp.Delivery{delivery(t, good), d})
			rejected(t, err, 1)
			if p := onePayment(t, pool, good.OrderId); p.Status != "APPROVED" {
				t.Errorf("payment of the good event = %+v, want APPROVED", p)
			}
			if got := payments(t, pool, ev.OrderId); len(got) != 0 {
				t.Errorf("payments = %+v, want none", got)
			}
			if out := outboxOf(t, pool, ev.OrderId); len(out) != 0 {
				t.Errorf("outbox = %+v, want nothing", out)
			}
		})
	}
}

func inventoryFailed(orderID string) *inventoryv1.InventoryFailed {
	return &inventoryv1.InventoryFailed{EventId: uuid.NewString(), OrderId: orderID, OccurTime: timestamppb.Now(),
		Reason: "product x: insufficient stock"}
}

func inventoryReleased(orderID string) *inventoryv1.InventoryReleased {
	return &inventoryv1.InventoryReleased{EventId: uuid.NewString(), OrderId: orderID, OccurTime: timestamppb.Now(),
		ReservationId: uuid.NewString(), Reason: "carrier does not deliver to AQ"}
}

func TestReversal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		event      func(orderID string) rules.Message
		handler    func(*handlers) broker.Handler
		wantReason string
	}{
		{"inventory failed", func(id string) rules.Message { return inventoryFailed(id) },
			func(h *handlers) broker.Handler { return h.InventoryFailed },
			"inventory failed: product x: insufficient stock"},
		{"inventory released", func(id string) rules.Message { return inventoryReleased(id) },
			func(h *handlers) broker.Handler { return h.InventoryReleased },
			"inventory released: carrier does not deliver to AQ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, pool := setup(t)
			created := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(2, 4990))
			handle(t, h.OrderCreated, delivery(t, created))
			d := delivery(t, tt.event(created.OrderId))
			handle(t, tt.handler(h), d, d)
			handle(t, tt.handler(h), d)
			// Another compensation event for the same order finds the payment reversed already.
			handle(t, tt.handler(h), delivery(t, tt.event(created.OrderId)))

			p := onePayment(t, pool, created.OrderId)
			if p.Status != "REVERSED" || p.Reason != tt.wantReason {
				t.Errorf("payment = %+v, want REVERSED %q", p, tt.wantReason)
			}
			out := outboxOf(t, pool, created.OrderId)
			if len(out) != 2 {
				t.Fatalf("%d outbox rows, want approved then reversed", len(out))
			}
			var reversed paymentv1.PaymentReversed
			decodeOutbox(t, out[1], catalog.PaymentReversed, &reversed)
			if reversed.PaymentId != p.ID || reversed.AmountMinor != 9980 || reversed.Reason != tt.wantReason {
				t.Errorf("payment.reversed = %v", &reversed)
			}
		})
	}
}

func TestReversalBatch(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	approved1 := orderCreated(uuid.NewString(), payment.MethodCreditCard, line(1, 100))
	approved2 := orderCreated(uuid.NewString(), payment.MethodDebitCard, line(1, 200))
	declined := orderCreated(uuid.NewString(), payment.MethodDeclinedCard, line(1, 300))
	handle(t, h.OrderCreated, delivery(t, approved1), delivery(t, approved2), delivery(t, declined))
	unknown := uuid.NewString()
	handle(t, h.InventoryFailed, delivery(t, inventoryFailed(approved2.OrderId)), delivery(t, inventoryFailed(unknown)),
		delivery(t, inventoryFailed(declined.OrderId)), delivery(t, inventoryFailed(approved1.OrderId)))

	for _, ev := range []*orderv1.OrderCreated{approved1, approved2} {
		if p := onePayment(t, pool, ev.OrderId); p.Status != "REVERSED" {
			t.Errorf("payment = %+v, want REVERSED", p)
		}
		out := outboxOf(t, pool, ev.OrderId)
		if len(out) != 2 || out[1].RoutingKey != catalog.PaymentReversed {
			t.Errorf("outbox = %+v, want approved then reversed", out)
		}
	}
	if p := onePayment(t, pool, declined.OrderId); p.Status != "DECLINED" || p.Reason != "card declined" {
		t.Errorf("declined payment = %+v, want untouched", p)
	}
	if out := outboxOf(t, pool, declined.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.PaymentFailed {
		t.Errorf("outbox of declined = %+v, want only payment.failed", out)
	}
	if got := payments(t, pool, unknown); len(got) != 0 {
		t.Errorf("unknown order has payments %+v", got)
	}
	if out := outboxOf(t, pool, unknown); len(out) != 0 {
		t.Errorf("outbox of unknown order = %+v, want nothing", out)
	}
}

func TestReversalInvalid(t *testing.T) {
	t.Parallel()
	h, _ := setup(t)
	d := delivery(t, inventoryFailed("not-a-uuid"))
	rejected(t, h.InventoryFailed(context.Background(), []amqp.Delivery{d}), 0)
	d = delivery(t, inventoryReleased(uuid.NewString()))
	rejected(t, h.InventoryFailed(context.Background(), []amqp.Delivery{d}), 0)
}

func orderCancelled(orderID, stuck string) *orderv1.OrderCancelled {
	return &orderv1.OrderCancelled{EventId: uuid.NewString(), OrderId: orderID, OccurTime: timestamppb.Now(),
		Reason: "saga deadline passed", StuckStatus: stuck}
}

// TestOrderCancelled covers what a cancellation finds, and that whatever arrives after it,
// repeated, changes nothing.
func TestOrderCancelled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string // "" when order.created has not come before the cancellation
		wantStatus string
		wantEvents []string // routing keys in the outbox, oldest first
	}{
		{"before the charge", "", "CANCELLED", nil},
		{"after an approval", payment.MethodCreditCard, "REVERSED", []string{catalog.PaymentApproved, catalog.PaymentReversed}},
		{"after a decline", payment.MethodDeclinedCard, "DECLINED", []string{catalog.PaymentFailed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, pool := setup(t)
			orderID := uuid.NewString()
			created := delivery(t, orderCreated(orderID, payment.MethodCreditCard, line(2, 4990)))
			if tt.method != "" {
				created = delivery(t, orderCreated(orderID, tt.method, line(2, 4990)))
				handle(t, h.OrderCreated, created)
			}
			cancelled := delivery(t, orderCancelled(orderID, "PENDING"))
			handle(t, h.OrderCancelled, cancelled, cancelled)
			// Late and repeated: the order.created (redelivered, or a fresh copy), compensation
			// events, the cancellation itself.
			handle(t, h.OrderCreated, created)
			handle(t, h.OrderCreated, delivery(t, orderCreated(orderID, payment.MethodCreditCard, line(2, 4990))))
			handle(t, h.InventoryFailed, delivery(t, inventoryFailed(orderID)))
			handle(t, h.InventoryReleased, delivery(t, inventoryReleased(orderID)))
			handle(t, h.OrderCancelled, cancelled)
			handle(t, h.OrderCancelled, delivery(t, orderCancelled(orderID, "PENDING")))

			p := onePayment(t, pool, orderID)
			if p.Status != tt.wantStatus {
				t.Errorf("payment = %+v, want %s", p, tt.wantStatus)
			}
			if tt.wantStatus != "DECLINED" && p.Reason != "order cancelled: saga deadline passed" {
				t.Errorf("payment reason %q", p.Reason)
			}
			var keys []string
			for _, row := range outboxOf(t, pool, orderID) {
				keys = append(keys, row.RoutingKey)
			}
			if len(keys) != len(tt.wantEvents) {
				t.Fatalf("outbox %v, want %v", keys, tt.wantEvents)
			}
			for i := range keys {
				if keys[i] != tt.wantEvents[i] {
					t.Fatalf("outbox %v, want %v", keys, tt.wantEvents)
				}
			}
		})
	}
}

// TestOrderCancelledRacesTheCharge runs a cancellation and the order's charge at the same time,
// many times: either the charge finds the tombstone, or the cancellation reverses the charge.
func TestOrderCancelledRacesTheCharge(t *testing.T) {
	t.Parallel()
	h, pool := setup(t)
	for range 20 {
		orderID := uuid.NewString()
		created := delivery(t, orderCreated(orderID, payment.MethodCreditCard, line(1, 1000)))
		cancelled := delivery(t, orderCancelled(orderID, "PENDING"))
		errs := make(chan error, 2)
		go func() { errs <- h.OrderCreated(context.Background(), []amqp.Delivery{created}) }()
		go func() { errs <- h.OrderCancelled(context.Background(), []amqp.Delivery{cancelled}) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		p := onePayment(t, pool, orderID)
		if p.Status != "CANCELLED" && p.Status != "REVERSED" {
			t.Fatalf("order %s: payment %+v, want CANCELLED or REVERSED", orderID, p)
		}
	}
}
