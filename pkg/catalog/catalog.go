// Package catalog is the saga's map: which service publishes each event, on which exchange,
// which services consume it and from which queue, and the proto message it carries. It reads
// like the event table of DESIGN.md, and knows nothing of the transport.
package catalog

import (
	"strings"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
)

// Services of the saga; each is a publisher with its own exchange and a consumer with its own queues.
const (
	Order     = "order"
	Payment   = "payment"
	Inventory = "inventory"
	Shipping  = "shipping"
)

// Routing keys of the event catalog (fixed). The first segment names the publisher.
const (
	OrderCreated      = "order.created"
	OrderCancelled    = "order.cancelled"
	PaymentApproved   = "payment.approved"
	PaymentFailed     = "payment.failed"
	PaymentReversed   = "payment.reversed"
	InventoryReserved = "inventory.reserved"
	InventoryFailed   = "inventory.failed"
	InventoryReleased = "inventory.released"
	ShippingScheduled = "shipping.scheduled"
	ShippingFailed    = "shipping.failed"
)

// Entry is one event of the catalog: its routing key, the message it carries and who consumes it.
type Entry struct {
	RoutingKey string
	Message    proto.Message // a zero value of the event's message type
	Consumers  []string
}

// Events is the event catalog (fixed: DESIGN.md).
var Events = []Entry{
	{OrderCreated, (*orderv1.OrderCreated)(nil), []string{Payment}},
	{OrderCancelled, (*orderv1.OrderCancelled)(nil), []string{Payment, Inventory, Shipping}},
	{PaymentApproved, (*paymentv1.PaymentApproved)(nil), []string{Inventory, Order}},
	{PaymentFailed, (*paymentv1.PaymentFailed)(nil), []string{Order}},
	{PaymentReversed, (*paymentv1.PaymentReversed)(nil), []string{Order}},
	{InventoryReserved, (*inventoryv1.InventoryReserved)(nil), []string{Shipping, Order}},
	{InventoryFailed, (*inventoryv1.InventoryFailed)(nil), []string{Payment, Order}},
	{InventoryReleased, (*inventoryv1.InventoryReleased)(nil), []string{Payment}},
	{ShippingScheduled, (*shippingv1.ShippingScheduled)(nil), []string{Order}},
	{ShippingFailed, (*shippingv1.ShippingFailed)(nil), []string{Inventory, Order}},
}

// Publisher is the service that publishes an event.
func Publisher(routingKey string) string {
	svc, _, _ := strings.Cut(routingKey, ".")
	return svc
}

// Exchange is the durable topic exchange an event is published on: one per publisher.
func Exchange(routingKey string) string { return Publisher(routingKey) + ".exchange" }

// Exchanges lists the publishers' exchanges.
func Exchanges() []string {
	return []string{Exchange(OrderCreated), Exchange(PaymentApproved), Exchange(InventoryReserved), Exchange(ShippingScheduled)}
}

// MessageType is the full proto name of the message an event carries, e.g.
// payment.v1.PaymentApproved: the AMQP type property. "" for a routing key not in the catalog.
func MessageType(routingKey string) string {
	for _, e := range Events {
		if e.RoutingKey == routingKey {
			return string(e.Message.ProtoReflect().Descriptor().FullName())
		}
	}
	return ""
}

// Subscription is one (consumer, event) pair of the catalog: one queue.
type Subscription struct {
	Consumer   string
	RoutingKey string
}

// Queue is the subscription's queue, e.g. payment.order-created.
func (s Subscription) Queue() string {
	return s.Consumer + "." + strings.ReplaceAll(s.RoutingKey, ".", "-")
}

// Exchange is the exchange the subscription's queue is bound to.
func (s Subscription) Exchange() string { return Exchange(s.RoutingKey) }

// DeadLetterQueue is where the subscription's dead letters go: <queue>.dlq.
func (s Subscription) DeadLetterQueue() string { return s.Queue() + ".dlq" }

// Subscriptions lists every queue of the saga, in catalog order.
func Subscriptions() []Subscription {
	var subs []Subscription
	for _, e := range Events {
		for _, c := range e.Consumers {
			subs = append(subs, Subscription{Consumer: c, RoutingKey: e.RoutingKey})
		}
	}
	return subs
}

// SubscriptionsOf lists the queues one service consumes.
func SubscriptionsOf(consumer string) []Subscription {
	var subs []Subscription
	for _, s := range Subscriptions() {
		if s.Consumer == consumer {
			subs = append(subs, s)
		}
	}
	return subs
}
