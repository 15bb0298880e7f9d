package services_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	inventory "github.com/ordersaga/ordersaga/services/inventory/memory"
	order "github.com/ordersaga/ordersaga/services/order/memory"
	payment "github.com/ordersaga/ordersaga/services/payment/memory"
	shipping "github.com/ordersaga/ordersaga/services/shipping/memory"
)

// The saga as a whole, in memory: the four services' real rules and domains over the event
// catalog, on a bus that delivers in order, twice, or shuffled. The end-to-end suite runs the
// same saga on PostgreSQL and RabbitMQ.

// saga is the four services in memory, with the default configuration.
type saga struct {
	order     *order.Service
	payment   *payment.Service
	inventory *inventory.Service
	shipping  *shipping.Service
}

// The gateway's and the carrier's settings when the environment sets nothing (DESIGN.md):
// orders up to 10000.00 are paid, freight is 10.00 and more, nothing fails at random.
const (
	amountLimitMinor = 1_000_000
	baseFreightMinor = 1_000
)

func newSaga(t *testing.T) *saga {
	t.Helper()
	var s saga
	var err error
	if s.order, err = order.New(); err != nil {
		t.Fatal(err)
	}
	if s.payment, err = payment.New(amountLimitMinor, 0); err != nil {
		t.Fatal(err)
	}
	if s.inventory, err = inventory.New(); err != nil {
		t.Fatal(err)
	}
	if s.shipping, err = shipping.New(baseFreightMinor, 0); err != nil {
		t.Fatal(err)
	}
	return &s
}

// delivery is one message on one consumer's queue.
type delivery struct {
	consumer   string
	routingKey string
	body       []byte
}

// bus carries what the services publish to the consumers the catalog names. It holds every
// message until run, which delivers them one by one: in publication order, or in an order
// drawn from shuffle; with twice, every message is delivered a second time too.
type bus struct {
	t       *testing.T
	saga    *saga
	shuffle *rand.Rand
	twice   bool
	pending []delivery
	sent    map[string][]string // routing keys published about each order
}

func newBus(t *testing.T, s *saga, shuffle *rand.Rand, twice bool) *bus {
	return &bus{t: t, saga: s, shuffle: shuffle, twice: twice, sent: map[string][]string{}}
}

// publish encodes events as the outbox relay does and queues them for their consumers.
func (b *bus) publish(events ...outbox.Event) {
	b.t.Helper()
	msgs, err := outbox.Encode(events...)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, m := range msgs {
		b.sent[m.CorrelationID] = append(b.sent[m.CorrelationID], m.RoutingKey)
		for _, e := range catalog.Events {
			if e.RoutingKey != m.RoutingKey {
				continue
			}
			for _, c := range e.Consumers {
				d := delivery{consumer: c, routingKey: m.RoutingKey, body: m.Body}
				b.pending = append(b.pending, d)
				if b.twice {
					b.pending = append(b.pending, d)
				}
			}
		}
	}
}

// run delivers until nothing is left. A delivery the broker would dead-letter fails the test:
// the saga sends none.
func (b *bus) run() {
	b.t.Helper()
	deliver := map[string]func(context.Context, string, []byte) ([]outbox.Event, error){
		catalog.Order:     b.saga.order.Deliver,
		catalog.Payment:   b.saga.payment.Deliver,
		catalog.Inventory: b.saga.inventory.Deliver,
		catalog.Shipping:  b.saga.shipping.Deliver,
	}
	for len(b.pending) > 0 {
		i := 0
		if b.shuffle != nil {
			i = b.shuffle.IntN(len(b.pending))
		}
		d := b.pending[i]
		b.pending = slices.Delete(b.pending, i, i+1)
		out, err := deliver[d.consumer](b.t.Context(), d.routingKey, d.body)
		if err != nil {
			b.t.Fatalf("%s on %s: %v", d.routingKey, d.consumer, err)
		}
		b.publish(out...)
	}
}

// place places an order through order-service and publishes its order.created.
func (b *bus) place(method, country string, lines ...order.Item) string {
	b.t.Helper()
	id, created, err := b.saga.order.Place(order.Request{
		CustomerID:    uuid.NewString(),
		PaymentMethod: method,
		Items:         lines,
		CountryCode:   country,
	})
	if err != nil {
		b.t.Fatal(err)
	}
	b.publish(created)
	return id
}

// outcome is where an order and what it touched end.
type outcome struct {
	status   string
	reason   string   // in the order's failure reason
	payment  string   // the payment's status; "" for none
	held     bool     // the order's units stay reserved
	released bool     // a reservation was made and given back
	shipment string   // the shipment's status; "" for none
	events   []string // routing keys published about the order, each once
	history  []string // its statuses, when each queue delivers in publication order
}

var (
	confirmed = outcome{
		status: "CONFIRMED", payment: "APPROVED", held: true, shipment: "SCHEDULED",
		events:  []string{catalog.OrderCreated, catalog.PaymentApproved, catalog.InventoryReserved, catalog.ShippingScheduled},
		history: []string{"PENDING", "PAYMENT_APPROVED", "INVENTORY_RESERVED", "CONFIRMED"},
	}
	declined = func(reason string) outcome {
		return outcome{
			status: "PAYMENT_FAILED", reason: reason, payment: "DECLINED",
			events:  []string{catalog.OrderCreated, catalog.PaymentFailed},
			history: []string{"PENDING", "PAYMENT_FAILED"},
		}
	}
	unreserved = func(reason string) outcome {
		return outcome{
			status: "CANCELLED", reason: reason, payment: "REVERSED",
			events:  []string{catalog.OrderCreated, catalog.PaymentApproved, catalog.InventoryFailed, catalog.PaymentReversed},
			history: []string{"PENDING", "PAYMENT_APPROVED", "INVENTORY_FAILED", "CANCELLED"},
		}
	}
	unshipped = outcome{
		status: "CANCELLED", reason: "does not deliver to AQ", payment: "REVERSED", released: true, shipment: "FAILED",
		events: []string{catalog.OrderCreated, catalog.PaymentApproved, catalog.InventoryReserved, catalog.ShippingFailed,
			catalog.InventoryReleased, catalog.PaymentReversed},
		history: []string{"PENDING", "PAYMENT_APPROVED", "INVENTORY_RESERVED", "SHIPPING_FAILED", "CANCELLED"},
	}
)

// scenario is one order placed against a product of its own.
type scenario struct {
	name     string
	method   string
	price    string
	quantity int32
	stock    int64 // of the order's product; -1: no such product
	unknown  bool  // one more line, of a product inventory does not know
	country  string
	want     outcome
}

var scenarios = []scenario{
	{name: "credit card", method: "credit_card", price: "49.90", quantity: 2, stock: 5, country: "BR", want: confirmed},
	{name: "debit card, no address", method: "debit_card", price: "5", quantity: 5, stock: 5, want: confirmed},
	{name: "total at the limit", method: "credit_card", price: "10000.00", quantity: 1, stock: 5, country: "DE", want: confirmed},
	{name: "declined card", method: "declined_card", price: "49.90", quantity: 1, stock: 5, country: "BR", want: declined("card declined")},
	{name: "total over the limit", method: "credit_card", price: "5000.01", quantity: 2, stock: 5, country: "BR", want: declined("exceeds limit")},
	{name: "unknown product", method: "credit_card", price: "49.90", quantity: 1, stock: -1, country: "BR", want: unreserved("unknown product")},
	{name: "out of stock", method: "credit_card", price: "49.90", quantity: 6, stock: 5, country: "BR", want: unreserved("insufficient stock")},
	{name: "one line unknown", method: "debit_card", price: "1.50", quantity: 1, stock: 5, unknown: true, country: "BR", want: unreserved("unknown product")},
	{name: "carrier refuses AQ", method: "credit_card", price: "49.90", quantity: 3, stock: 5, country: "AQ", want: unshipped},
}

// placed is a scenario's order on a bus.
type placed struct {
	scenario
	orderID, productID string
}

// place stocks the scenario's product and places its order.
func (sc scenario) place(t *testing.T, b *bus) placed {
	t.Helper()
	p := placed{scenario: sc, productID: uuid.NewString()}
	if sc.stock >= 0 {
		if err := b.saga.inventory.SetStock(p.productID, sc.stock); err != nil {
			t.Fatal(err)
		}
	}
	lines := []order.Item{{ProductID: p.productID, Quantity: sc.quantity, UnitPrice: sc.price}}
	if sc.unknown {
		lines = append(lines, order.Item{ProductID: uuid.NewString(), Quantity: 1, UnitPrice: sc.price})
	}
	p.orderID = b.place(sc.method, sc.country, lines...)
	return p
}

var trackingCode = regexp.MustCompile(`^TRK-[A-Z0-9]{8}$`)

// check checks the scenario's outcome in every service; the order's history too when the bus
// kept each queue in publication order.
func (p placed) check(t *testing.T, b *bus, inOrder bool) {
	t.Helper()
	s, want := b.saga, p.want
	o, ok := s.order.Order(p.orderID)
	if !ok {
		t.Fatalf("order %s not found", p.orderID)
	}
	if o.Status != want.status || !strings.Contains(o.FailureReason, want.reason) {
		t.Errorf("order: %s (%q), want %s (%q)", o.Status, o.FailureReason, want.status, want.reason)
	}
	if inOrder && !slices.Equal(o.History, want.history) {
		t.Errorf("history %v, want %v", o.History, want.history)
	}
	if sent := slices.Sorted(slices.Values(b.sent[p.orderID])); !slices.Equal(sent, slices.Sorted(slices.Values(want.events))) {
		t.Errorf("published %v, want each of %v once", b.sent[p.orderID], want.events)
	}

	pay, ok := s.payment.Payment(p.orderID)
	if pay.Status != want.payment || (ok && pay.AmountMinor != o.TotalMinor) {
		t.Errorf("payment %+v, want %s of %d", pay, want.payment, o.TotalMinor)
	}

	var units int64
	if want.held {
		units = int64(p.quantity)
	}
	if st, _ := s.inventory.Stock(p.productID); st.Reserved != units || st.Total != max(p.stock, 0) {
		t.Errorf("stock %+v, want %d of %d reserved", st, units, max(p.stock, 0))
	}
	res, ok := s.inventory.Reservation(p.orderID)
	if ok != (want.held || want.released) || res.Released != want.released || (ok && res.Units != int64(p.quantity)) {
		t.Errorf("reservation %+v (exists %v), want held %v, released %v", res, ok, want.held, want.released)
	}

	sh, _ := s.shipping.Shipment(p.orderID)
	if sh.Status != want.shipment {
		t.Errorf("shipment %+v, want %q", sh, want.shipment)
	}
	if want.status == "CONFIRMED" && (!trackingCode.MatchString(o.TrackingCode) || o.TrackingCode != sh.TrackingCode) {
		t.Errorf("tracking code %q, shipment's %q", o.TrackingCode, sh.TrackingCode)
	}
}

// TestSaga runs each outcome on its own, with every message delivered once and then twice.
func TestSaga(t *testing.T) {
	t.Parallel()
	for _, twice := range []bool{false, true} {
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("%s/twice=%v", sc.name, twice), func(t *testing.T) {
				t.Parallel()
				b := newBus(t, newSaga(t), nil, twice)
				p := sc.place(t, b)
				b.run()
				p.check(t, b, true)
			})
		}
	}
}

// TestSagaOutOfOrder runs every outcome at once, the messages of all orders delivered in a
// shuffled order, once or twice each, for many seeds.
func TestSagaOutOfOrder(t *testing.T) {
	t.Parallel()
	for seed := range uint64(50) {
		for _, twice := range []bool{false, true} {
			t.Run(fmt.Sprintf("seed=%d/twice=%v", seed, twice), func(t *testing.T) {
				t.Parallel()
				b := newBus(t, newSaga(t), rand.New(rand.NewPCG(seed, 0)), twice)
				var all []placed
				for _, sc := range scenarios {
					all = append(all, sc.place(t, b))
				}
				b.run()
				for _, p := range all {
					t.Run(p.name, func(t *testing.T) { p.check(t, b, false) })
				}
			})
		}
	}
}

// TestSagaContention places more orders than there is stock: the stock goes to exactly as many
// orders as it covers, whatever the order of deliveries, and every other order is compensated.
func TestSagaContention(t *testing.T) {
	t.Parallel()
	const orders, stock = 50, 10
	for seed := range uint64(10) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			b := newBus(t, newSaga(t), rand.New(rand.NewPCG(seed, 1)), seed%2 == 1)
			product := uuid.NewString()
			if err := b.saga.inventory.SetStock(product, stock); err != nil {
				t.Fatal(err)
			}
			ids := make([]string, orders)
			for i := range ids {
				ids[i] = b.place("credit_card", "BR", order.Item{ProductID: product, Quantity: 1, UnitPrice: "10.00"})
			}
			b.run()
			count := map[string]int{}
			for _, id := range ids {
				o, _ := b.saga.order.Order(id)
				count[o.Status]++
				pay, _ := b.saga.payment.Payment(id)
				_, shipped := b.saga.shipping.Shipment(id)
				_, held := b.saga.inventory.Reservation(id)
				if ok := (o.Status == "CONFIRMED" && pay.Status == "APPROVED" && shipped && held) ||
					(o.Status == "CANCELLED" && pay.Status == "REVERSED" && !shipped && !held); !ok {
					t.Errorf("order %s: %s, payment %s, shipped %v, reserved %v", id, o.Status, pay.Status, shipped, held)
				}
			}
			if count["CONFIRMED"] != stock || count["CANCELLED"] != orders-stock {
				t.Errorf("statuses %v, want %d CONFIRMED and %d CANCELLED", count, stock, orders-stock)
			}
			if st, _ := b.saga.inventory.Stock(product); st.Reserved != stock {
				t.Errorf("stock %+v, want %d reserved", st, stock)
			}
		})
	}
}
