// Package broker is the RabbitMQ transport of the saga: the topology declared from the event
// catalog, a connection that survives broker restarts, batch consumers with manual acks, and a
// publisher with confirms.
package broker

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// DeadLetterExchange routes every dead letter to <queue>.dlq by the queue's name, and a message
// a consumer puts back for another try to <queue> by RetryRoutingKey.
const DeadLetterExchange = "ordersaga.dlx"

// FailureLimit is how many times a consumer lets its handler fail on a message (each time
// after ConsumerOptions.UnknownErrorTries tries in process) before it dead-letters the message
// itself: the guard against a poison loop. The consumer counts the failures in the
// HeaderFailures header of the copy it puts back in the queue, so that only the handler's
// failures count, never a redelivery because a consumer died or lost its channel.
const FailureLimit = 10

// DeliveryLimit is the quorum queues' own delivery limit (x-delivery-limit), a safety net under
// FailureLimit. On RabbitMQ 3.10 a message counts a delivery whenever its consumer dies or its
// channel closes with it unacked, so a service crash-looping with a backlog would spend it on
// every event it holds: a consumer renews a delivery the broker has counted RenewAt times (a
// fresh copy, its count carried in HeaderRedeliveries) long before the limit, and dead-letters
// it itself at RedeliveryLimit. The value is fixed: the broker refuses to declare an existing
// queue with other arguments, so changing it would strand every deployed queue.
const DeliveryLimit = 10

// RenewAt is the broker delivery count at which a consumer renews a delivery (DeliveryLimit).
const RenewAt = DeliveryLimit / 2

// RedeliveryLimit is how many deliveries in all, over its renewed copies, a message may have
// before a consumer dead-letters it: reached only by a message whose handling kills the process
// every time, before a failure can be counted (1000 restarts take days in Kubernetes' back-off).
const RedeliveryLimit = 1000

// RetryRoutingKey routes a message from DeadLetterExchange back to queue, for another try.
func RetryRoutingKey(queue string) string { return queue + ".retry" }

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
		if err := ch.QueueBind(s.Queue(), RetryRoutingKey(s.Queue()), DeadLetterExchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", s.Queue(), err)
		}
	}
	return nil
}
