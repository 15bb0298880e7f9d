package eventhandler_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

const baseFreightMinor = 1000 // 10.00

// now is the carrier's fixed clock; at a whole second so that it survives timestamptz exactly.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// handlers are shipping-service's broker handlers, one per queue it consumes.
type handlers struct {
	InventoryReserved, OrderCancelled broker.Handler
}

// setup returns the handlers of shipping-service on a fresh database. Their relay is not
// running: what they publish stays in the outbox table, where the tests read it.
func setup(t *testing.T, failureRate float64) (*handlers, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t, "shipping", postgres.Migrations...)
	return newHandlers(t, pool, outbox.NewRelay(pool, nil, testenv.Logger(t)), failureRate), pool
}

// newHandlers returns the handlers of shipping-service on pool, handing what they commit to relay.
func newHandlers(t *testing.T, pool *pgxpool.Pool, relay *outbox.Relay, failureRate float64) *handlers {
	t.Helper()
	carrier, err := shipping.NewCarrier(baseFreightMinor, failureRate, shipping.Env{
		Now:    func() time.Time { return now },
		Random: func() float64 { return 0.5 }, // 5 days; below any failure rate above 0.5
	})
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.Logger(t)
	reg := rules.New[eventhandler.Store](catalog.Shipping)
	eventhandler.Register(reg, carrier, log)
	byQueue, err := unitofwork.New(reg, pool, relay, log, postgres.NewStore).Handlers()
	if err != nil {
		t.Fatalf("handlers: %v", err)
	}
	h, ok := byQueue[catalog.Subscription{Consumer: catalog.Shipping, RoutingKey: catalog.InventoryReserved}]
	c, okc := byQueue[catalog.Subscription{Consumer: catalog.Shipping, RoutingKey: catalog.OrderCancelled}]
	if !ok || !okc || len(byQueue) != 2 {
		t.Fatalf("handlers = %v, want one for %s and one for %s", byQueue, catalog.InventoryReserved, catalog.OrderCancelled)
	}
	return &handlers{InventoryReserved: h, OrderCancelled: c}
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

func reserved(orderID, country string, quantities ...int32) *inventoryv1.InventoryReserved {
	ev := &inventoryv1.InventoryReserved{
		EventId:       uuid.NewString(),
		OrderId:       orderID,
		OccurTime:     timestamppb.Now(),
		ReservationId: uuid.NewString(),
		CountryCode:   country,
	}
	for _, q := range quantities {
		ev.Items = append(ev.Items, &orderv1.OrderLine{ProductId: uuid.NewString(), Quantity: q, UnitPriceMinor: 4990})
	}
	return ev
}

type shipmentRow struct {
	ID, Status, TrackingCode, CountryCode, Reason string
	FreightMinor                                  int64
	EstimatedDelivery                             *time.Time
}

func shipments(t *testing.T, pool *pgxpool.Pool, orderID string) []shipmentRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT id::text, status, COALESCE(tracking_code, ''), country_code, COALESCE(reason, ''), freight_minor, estimated_delivery
		FROM shipments WHERE order_id = $1`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (s shipmentRow, err error) {
		err = row.Scan(&s.ID, &s.Status, &s.TrackingCode, &s.CountryCode, &s.Reason, &s.FreightMinor, &s.EstimatedDelivery)
		return s, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func oneShipment(t *testing.T, pool *pgxpool.Pool, orderID string) shipmentRow {
	t.Helper()
	got := shipments(t, pool, orderID)
	if len(got) != 1 {
		t.Fatalf("order %s has %d shipments, want 1", orderID, len(got))
	}
	return got[0]
}

type outboxRow struct {
	EventID, Exchange, RoutingKey, MessageType, CorrelationID string
	Body                                                      []byte
}

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
	if row.RoutingKey != routingKey || row.Exchange != catalog.Exchange(catalog.ShippingScheduled) {
		t.Fatalf("outbox row on %s/%s, want %s/%s", row.Exchange, row.RoutingKey, catalog.Exchange(catalog.ShippingScheduled), routingKey)
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

func TestInventoryReservedScheduled(t *testing.T) {
	t.Parallel()
	h, pool := setup(t, 0)
	ev := reserved(uuid.NewString(), "BR", 2, 1)
	handle(t, h.InventoryReserved, delivery(t, ev))

	s := oneShipment(t, pool, ev.OrderId)
	wantDelivery := now.AddDate(0, 0, 5)
	if s.Status != "SCHEDULED" || s.FreightMinor != 1450 || s.CountryCode != "BR" || s.Reason != "" ||
		s.EstimatedDelivery == nil || !s.EstimatedDelivery.Equal(wantDelivery) || !trackingCode(s.TrackingCode) {
		t.Errorf("shipment = %+v (delivery %v), want SCHEDULED, freight 1450, delivery %s", s, s.EstimatedDelivery, wantDelivery)
	}
	out := outboxOf(t, pool, ev.OrderId)
	if len(out) != 1 {
		t.Fatalf("%d outbox rows, want 1", len(out))
	}
	var scheduled shippingv1.ShippingScheduled
	decodeOutbox(t, out[0], catalog.ShippingScheduled, &scheduled)
	if scheduled.ShipmentId != s.ID || scheduled.TrackingCode != s.TrackingCode || scheduled.FreightMinor != 1450 ||
		!scheduled.EstimatedDeliveryTime.AsTime().Equal(wantDelivery) {
		t.Errorf("shipping.scheduled = %v", &scheduled)
	}
}

func trackingCode(s string) bool {
	if len(s) != 12 || s[:4] != "TRK-" {
		return false
	}
	for _, r := range s[4:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

func TestInventoryReservedFailed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		country     string
		failureRate float64
		wantReason  string
	}{
		{"antarctica", "AQ", 0, "carrier does not deliver to AQ"},
		{"random failure", "BR", 1, "carrier unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, pool := setup(t, tt.failureRate)
			ev := reserved(uuid.NewString(), tt.country, 1)
			handle(t, h.InventoryReserved, delivery(t, ev))

			s := oneShipment(t, pool, ev.OrderId)
			if s.Status != "FAILED" || s.Reason != tt.wantReason || s.TrackingCode != "" || s.EstimatedDelivery != nil {
				t.Errorf("shipment = %+v, want FAILED %q", s, tt.wantReason)
			}
			out := outboxOf(t, pool, ev.OrderId)
			if len(out) != 1 {
				t.Fatalf("%d outbox rows, want 1", len(out))
			}
			var failed shippingv1.ShippingFailed
			decodeOutbox(t, out[0], catalog.ShippingFailed, &failed)
			if failed.Reason != tt.wantReason {
				t.Errorf("shipping.failed = %v", &failed)
			}
		})
	}
}

func TestInventoryReservedDuplicates(t *testing.T) {
	t.Parallel()
	h, pool := setup(t, 0)
	ev := reserved(uuid.NewString(), "BR", 1)
	d := delivery(t, ev)
	// The same event twice in one batch, redelivered, then another event for the same order
	// (which would fail): the order keeps its first shipment.
	handle(t, h.InventoryReserved, d, d)
	handle(t, h.InventoryReserved, d)
	handle(t, h.InventoryReserved, delivery(t, reserved(ev.OrderId, "AQ", 1)))

	if s := oneShipment(t, pool, ev.OrderId); s.Status != "SCHEDULED" {
		t.Errorf("shipment = %+v, want the first, scheduled", s)
	}
	if out := outboxOf(t, pool, ev.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.ShippingScheduled {
		t.Errorf("outbox = %+v, want one shipping.scheduled", out)
	}
}

func TestInventoryReservedBatchOfTwo(t *testing.T) {
	t.Parallel()
	h, pool := setup(t, 0)
	ok := reserved(uuid.NewString(), "PT", 4)
	refused := reserved(uuid.NewString(), "AQ", 1)
	sameOrder := reserved(ok.OrderId, "PT", 4)
	handle(t, h.InventoryReserved, delivery(t, ok), delivery(t, refused), delivery(t, sameOrder))

	if s := oneShipment(t, pool, ok.OrderId); s.Status != "SCHEDULED" || s.FreightMinor != 1600 {
		t.Errorf("first shipment = %+v", s)
	}
	if s := oneShipment(t, pool, refused.OrderId); s.Status != "FAILED" {
		t.Errorf("second shipment = %+v", s)
	}
	if out := outboxOf(t, pool, ok.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.ShippingScheduled {
		t.Errorf("outbox of first = %+v", out)
	}
	if out := outboxOf(t, pool, refused.OrderId); len(out) != 1 || out[0].RoutingKey != catalog.ShippingFailed {
		t.Errorf("outbox of second = %+v", out)
	}
}

func TestInventoryReservedInvalid(t *testing.T) {
	t.Parallel()
	h, pool := setup(t, 0)
	tests := []struct {
		name     string
		event    func(*inventoryv1.InventoryReserved)
		delivery func(*amqp.Delivery)
	}{
		{"no items", func(ev *inventoryv1.InventoryReserved) { ev.Items = nil }, nil},
		{"zero quantity", func(ev *inventoryv1.InventoryReserved) { ev.Items[0].Quantity = 0 }, nil},
		{"bad order id", func(ev *inventoryv1.InventoryReserved) { ev.OrderId = "1" }, nil},
		{"wrong type", nil, func(d *amqp.Delivery) { d.Type = "inventory.v1.InventoryFailed" }},
		{"garbage body", nil, func(d *amqp.Delivery) { d.Body = []byte{0xff, 0xff} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orderID := uuid.NewString()
			ev := reserved(orderID, "BR", 1)
			if tt.event != nil {
				tt.event(ev)
			}
			d := delivery(t, ev)
			if tt.delivery != nil {
				tt.delivery(&d)
			}
			// Refused on its own, while the good event of the same batch takes effect.
			good := reserved(uuid.NewString(), "BR", 1)
			rejected(t, h.InventoryReserved(context.Background(), []amqp.Delivery{d, delivery(t, good)}), 0)
			if s := oneShipment(t, pool, good.OrderId); s.Status != "SCHEDULED" {
				t.Errorf("shipment of the good event = %+v, want SCHEDULED", s)
			}
			if got := shipments(t, pool, orderID); len(got) != 0 {
				t.Errorf("shipments = %+v, want none", got)
			}
			if out := outboxOf(t, pool, orderID); len(out) != 0 {
				t.Errorf("outbox = %+v, want nothing", out)
			}
		})
	}
}

func orderCancelled(orderID string) *orderv1.OrderCancelled {
	return &orderv1.OrderCancelled{EventId: uuid.NewString(), OrderId: orderID, OccurTime: timestamppb.Now(),
		Reason: "saga deadline passed", StuckStatus: "INVENTORY_RESERVED"}
}

// TestOrderCancelled covers a cancellation before and after the shipment, then the
// inventory.reserved arriving late and everything repeated: nothing stays shipped.
func TestOrderCancelled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		country     string // "" when inventory.reserved comes after the cancellation
		wantStatus  string
		wantReason  string
		wantOutbox  []string
		wantTracked bool
	}{
		{"before the shipment", "", "CANCELLED", "order cancelled: saga deadline passed", nil, false},
		{"after scheduling", "BR", "CANCELLED", "order cancelled: saga deadline passed", []string{catalog.ShippingScheduled}, true},
		{"after a failure", "AQ", "FAILED", "carrier does not deliver to AQ", []string{catalog.ShippingFailed}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, pool := setup(t, 0)
			orderID := uuid.NewString()
			res := delivery(t, reserved(orderID, cmp.Or(tt.country, "BR"), 2))
			if tt.country != "" {
				handle(t, h.InventoryReserved, res)
			}
			cancelled := delivery(t, orderCancelled(orderID))
			handle(t, h.OrderCancelled, cancelled, cancelled)
			handle(t, h.InventoryReserved, res)
			handle(t, h.InventoryReserved, delivery(t, reserved(orderID, "BR", 1)))
			handle(t, h.OrderCancelled, cancelled)
			handle(t, h.OrderCancelled, delivery(t, orderCancelled(orderID)))

			sh := oneShipment(t, pool, orderID)
			if sh.Status != tt.wantStatus || sh.Reason != tt.wantReason || (sh.TrackingCode != "") != tt.wantTracked {
				t.Errorf("shipment = %+v, want %s %q", sh, tt.wantStatus, tt.wantReason)
			}
			var keys []string
			for _, row := range outboxOf(t, pool, orderID) {
				keys = append(keys, row.RoutingKey)
			}
			if fmt.Sprint(keys) != fmt.Sprint(tt.wantOutbox) {
				t.Errorf("outbox %v, want %v", keys, tt.wantOutbox)
			}
		})
	}
}

// TestOrderCancelledRacesTheShipment runs a cancellation and the order's scheduling at the same
// time, many times: whichever wins, the order's one shipment ends CANCELLED.
func TestOrderCancelledRacesTheShipment(t *testing.T) {
	t.Parallel()
	h, pool := setup(t, 0)
	for range 20 {
		orderID := uuid.NewString()
		res := delivery(t, reserved(orderID, "BR", 1))
		cancelled := delivery(t, orderCancelled(orderID))
		errs := make(chan error, 2)
		go func() { errs <- h.InventoryReserved(context.Background(), []amqp.Delivery{res}) }()
		go func() { errs <- h.OrderCancelled(context.Background(), []amqp.Delivery{cancelled}) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if sh := oneShipment(t, pool, orderID); sh.Status != "CANCELLED" {
			t.Fatalf("order %s: shipment %+v, want CANCELLED", orderID, sh)
		}
	}
}
