// Package broker is the RabbitMQ transport of the saga: the topology declared from the event
// catalog, a connection that survives broker restarts, batch consumers with manual acks, and a
// publisher with confirms.
package broker

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// DeadLetterExchange routes every dead letter to <queue>.dlq by the queue's name.
const DeadLetterExchange = "ordersaga.dlx"

// DeliveryLimit is how many times a quorum queue redelivers a message that keeps failing before
// it dead-letters it: the last guard against a poison loop. It is generous because on this
// broker a message also counts a delivery when its consumer dies with it in hand.
const DeliveryLimit = 10

// DeclareTopology declares every exchange, queue, dead-letter queue and binding of the catalog.
// Every service declares all of it, so that no event is published before its queues exist,
// whatever order the services start in. Declaring is idempotent.
func DeclareTopology(ch *amqp.Channel) error {
	for _, ex := range catalog.Exchanges() {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", ex, err)
		}
	}
	if err := ch.ExchangeDeclare(DeadLetterExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", DeadLetterExchange, err)
	}
	for _, s := range catalog.Subscriptions() {
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
