// Package broker connects services to RabbitMQ: the fixed topology of the saga, a connection that
// survives broker restarts, batch consumers with manual acks, and a publisher with confirms.
package broker

import (
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Exchanges, one durable topic exchange per publishing service.
const (
	OrderExchange     = "order.exchange"
	PaymentExchange   = "payment.exchange"
	InventoryExchange = "inventory.exchange"
	ShippingExchange  = "shipping.exchange"

	// DeadLetterExchange routes every dead letter to <queue>.dlq by the queue's name.
	DeadLetterExchange = "ordersaga.dlx"
)

// Routing keys of the event catalog.
const (
	OrderCreated      = "order.created"
	PaymentApproved   = "payment.approved"
	PaymentFailed     = "payment.failed"
	PaymentReversed   = "payment.reversed"
	InventoryReserved = "inventory.reserved"
	InventoryFailed   = "inventory.failed"
	InventoryReleased = "inventory.released"
	ShippingScheduled = "shipping.scheduled"
	ShippingFailed    = "shipping.failed"
)

// DeliveryLimit is how many times a quorum queue redelivers a message that keeps failing before
// it dead-letters it: the last guard against a poison loop. It is generous because on this
// broker a message also counts a delivery when its consumer dies with it in hand.
const DeliveryLimit = 10

// Subscription is one (consumer, event) pair of the catalog and its queue.
type Subscription struct {
	Consumer   string // service name: order, payment, inventory, shipping
	RoutingKey string
}

// Queue is the subscription's queue name, e.g. payment.order-created.
func (s Subscription) Queue() string {
	return s.Consumer + "." + strings.ReplaceAll(s.RoutingKey, ".", "-")
}

// Exchange is the exchange the event is published on.
func (s Subscription) Exchange() string { return ExchangeFor(s.RoutingKey) }

// DeadLetterQueue is where the subscription's dead letters go.
func (s Subscription) DeadLetterQueue() string { return s.Queue() + ".dlq" }

// ExchangeFor returns the exchange of a routing key: the publisher's name is its first segment.
func ExchangeFor(routingKey string) string {
	svc, _, _ := strings.Cut(routingKey, ".")
	return svc + ".exchange"
}

// Catalog is every subscription of the saga (fixed: DESIGN.md's event catalog).
var Catalog = []Subscription{
	{"payment", OrderCreated},
	{"inventory", PaymentApproved},
	{"order", PaymentApproved},
	{"order", PaymentFailed},
	{"order", PaymentReversed},
	{"shipping", InventoryReserved},
	{"order", InventoryReserved},
	{"payment", InventoryFailed},
	{"order", InventoryFailed},
	{"payment", InventoryReleased},
	{"order", ShippingScheduled},
	{"inventory", ShippingFailed},
	{"order", ShippingFailed},
}

// SubscriptionsOf returns the subscriptions of one consumer service.
func SubscriptionsOf(consumer string) []Subscription {
	var subs []Subscription
	for _, s := range Catalog {
		if s.Consumer == consumer {
			subs = append(subs, s)
		}
	}
	return subs
}

// Exchanges lists the publishers' exchanges.
var Exchanges = []string{OrderExchange, PaymentExchange, InventoryExchange, ShippingExchange}

// DeclareTopology declares every exchange, queue, dead-letter queue and binding of the saga.
// Every service declares all of it, so that no event is published before its queues exist,
// whatever order the services start in. Declaring is idempotent.
func DeclareTopology(ch *amqp.Channel) error {
	for _, ex := range Exchanges {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", ex, err)
		}
	}
	if err := ch.ExchangeDeclare(DeadLetterExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", DeadLetterExchange, err)
	}
	for _, s := range Catalog {
		if _, err := ch.QueueDeclare(s.DeadLetterQueue(), true, false, false, false, amqp.Table{
			amqp.QueueTypeArg: amqp.QueueTypeQuorum,
		}); err != nil {
			return fmt.Errorf("declare queue %s: %w", s.DeadLetterQueue(), err)
		}
		if err := ch.QueueBind(s.DeadLetterQueue(), s.Queue(), DeadLetterExchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", s.DeadLetterQueue(), err)
		}
		if _, err := ch.QueueDeclare(s.Queue(), true, false, false, false, amqp.Table{
			amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
			"x-delivery-limit":          DeliveryLimit,
			"x-dead-letter-exchange":    DeadLetterExchange,
			"x-dead-letter-routing-key": s.Queue(),
		}); err != nil {
			return fmt.Errorf("declare queue %s: %w", s.Queue(), err)
		}
		if err := ch.QueueBind(s.Queue(), s.RoutingKey, s.Exchange(), false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", s.Queue(), err)
		}
	}
	return nil
}
