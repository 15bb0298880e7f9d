// Package eventhandler turns the saga events order-service consumes into order transitions.
package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Repository applies a batch of events in one transaction, idempotently per queue.
type Repository interface {
	ApplyEvents(ctx context.Context, queue string, events []order.Event) ([]order.Change, error)
}

// Handlers builds the broker handlers of order-service's subscriptions.
type Handlers struct {
	repo Repository
	log  *slog.Logger
}

// New returns the handlers applying events through repo.
func New(repo Repository, log *slog.Logger) *Handlers {
	return &Handlers{repo: repo, log: log}
}

// decoder turns one delivery into a domain event; its errors are broker.Permanent.
type decoder func(d amqp.Delivery) (order.Event, error)

var decoders = map[string]decoder{
	broker.PaymentApproved: func(d amqp.Delivery) (order.Event, error) {
		return decode(d, &paymentv1.PaymentApproved{}, order.PaymentApproved)
	},
	broker.PaymentFailed: func(d amqp.Delivery) (order.Event, error) {
		var ev paymentv1.PaymentFailed
		e, err := decode(d, &ev, order.PaymentFailed)
		e.Reason = ev.GetReason()
		return e, err
	},
	broker.PaymentReversed: func(d amqp.Delivery) (order.Event, error) {
		var ev paymentv1.PaymentReversed
		e, err := decode(d, &ev, order.PaymentReversed)
		e.Reason = ev.GetReason()
		return e, err
	},
	broker.InventoryReserved: func(d amqp.Delivery) (order.Event, error) {
		return decode(d, &inventoryv1.InventoryReserved{}, order.InventoryReserved)
	},
	broker.InventoryFailed: func(d amqp.Delivery) (order.Event, error) {
		var ev inventoryv1.InventoryFailed
		e, err := decode(d, &ev, order.InventoryFailed)
		e.Reason = ev.GetReason()
		return e, err
	},
	broker.ShippingScheduled: func(d amqp.Delivery) (order.Event, error) {
		var ev shippingv1.ShippingScheduled
		e, err := decode(d, &ev, order.ShippingScheduled)
		if err != nil {
			return e, err
		}
		if e.TrackingCode = ev.GetTrackingCode(); e.TrackingCode == "" {
			return e, broker.Invalid("shipping.v1.ShippingScheduled %s: no tracking_code", e.ID)
		}
		return e, nil
	},
	broker.ShippingFailed: func(d amqp.Delivery) (order.Event, error) {
		var ev shippingv1.ShippingFailed
		e, err := decode(d, &ev, order.ShippingFailed)
		e.Reason = ev.GetReason()
		return e, err
	},
}

func decode(d amqp.Delivery, ev broker.Event, kind order.EventKind) (order.Event, error) {
	if err := broker.Decode(d, ev); err != nil {
		return order.Event{}, err
	}
	// Ids in canonical form, as the database returns them: the inbox and the order lookup
	// compare them as text.
	return order.Event{
		ID:      uuid.MustParse(ev.GetEventId()).String(),
		OrderID: uuid.MustParse(ev.GetOrderId()).String(),
		Kind:    kind,
	}, nil
}

// For returns the handler of one of order-service's subscriptions.
func (h *Handlers) For(sub broker.Subscription) (broker.Handler, error) {
	dec, ok := decoders[sub.RoutingKey]
	if !ok || sub.Consumer != "order" {
		return nil, fmt.Errorf("order-service does not consume %s", sub.Queue())
	}
	queue := sub.Queue()
	return func(ctx context.Context, batch []amqp.Delivery) error {
		events := make([]order.Event, len(batch))
		for i, d := range batch {
			e, err := dec(d)
			if err != nil {
				return err // permanent: the consumer isolates and dead-letters this delivery
			}
			events[i] = e
		}
		changes, err := h.repo.ApplyEvents(ctx, queue, events)
		if errors.Is(err, order.ErrNotFound) || errors.Is(err, order.ErrUnknownEvent) {
			// Orders exist before any of their events is published: this event is bogus.
			return broker.Permanent(fmt.Errorf("unknown order: %w", err))
		}
		if err != nil {
			return err
		}
		for _, c := range changes {
			h.log.InfoContext(ctx, "order status changed", "order_id", c.Event.OrderID, "event_id", c.Event.ID,
				"event", string(c.Event.Kind), "status", string(c.Status), "reason", c.Reason)
		}
		return nil
	}, nil
}
