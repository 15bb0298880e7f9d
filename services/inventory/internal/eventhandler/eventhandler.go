// Package eventhandler turns the events inventory-service consumes into batched stock changes:
// payment.approved reserves an order's items, shipping.failed gives them back.
package eventhandler

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

// Store applies batches of reservations and releases, each in one transaction.
type Store interface {
	Reserve(ctx context.Context, queue string, orders []postgres.Order, announce func(postgres.Outcome) outbox.Event) ([]postgres.Outcome, error)
	Release(ctx context.Context, queue string, releases []postgres.Release, announce func(postgres.Released) outbox.Event) ([]postgres.Released, error)
}

// Handlers holds the service's event handlers.
type Handlers struct {
	store Store
	log   *slog.Logger
}

// New returns the handlers on store.
func New(store Store, log *slog.Logger) *Handlers {
	return &Handlers{store: store, log: log}
}

// For returns the handler of one of the service's subscriptions.
func (h *Handlers) For(sub broker.Subscription) (broker.Handler, error) {
	switch sub.RoutingKey {
	case broker.PaymentApproved:
		return h.PaymentApproved(sub.Queue()), nil
	case broker.ShippingFailed:
		return h.ShippingFailed(sub.Queue()), nil
	}
	return nil, fmt.Errorf("no handler for %s", sub.RoutingKey)
}

// PaymentApproved reserves the items of paid orders, all or nothing per order, and announces
// inventory.reserved or inventory.failed.
func (h *Handlers) PaymentApproved(queue string) broker.Handler {
	return func(ctx context.Context, batch []amqp.Delivery) error {
		orders := make([]postgres.Order, 0, len(batch))
		events := make(map[string]*paymentv1.PaymentApproved, len(batch))
		for _, d := range batch {
			ev := &paymentv1.PaymentApproved{}
			if err := broker.Decode(d, ev); err != nil {
				return err
			}
			items, err := toItems(ev)
			if err != nil {
				return err
			}
			eventID := canonical(ev.GetEventId())
			events[eventID] = ev
			orders = append(orders, postgres.Order{EventID: eventID, OrderID: canonical(ev.GetOrderId()), Items: items})
		}
		outcomes, err := h.store.Reserve(ctx, queue, orders, func(out postgres.Outcome) outbox.Event {
			return announceReservation(events[out.Order.EventID], out)
		})
		if err != nil {
			return fmt.Errorf("reserve: %w", err)
		}
		for _, out := range outcomes {
			log := h.log.With("order_id", out.Order.OrderID, "event_id", out.Order.EventID)
			switch {
			case out.Skipped:
				log.InfoContext(ctx, "order already reserved, event ignored")
			case out.Err != nil:
				log.InfoContext(ctx, "inventory reservation failed", "reason", out.Err.Error())
			default:
				log.InfoContext(ctx, "inventory reserved", "reservation_id", out.ReservationID)
			}
		}
		return nil
	}
}

// ShippingFailed gives back the reservation of an order that cannot be shipped and announces
// inventory.released.
func (h *Handlers) ShippingFailed(queue string) broker.Handler {
	return func(ctx context.Context, batch []amqp.Delivery) error {
		releases := make([]postgres.Release, 0, len(batch))
		for _, d := range batch {
			ev := &shippingv1.ShippingFailed{}
			if err := broker.Decode(d, ev); err != nil {
				return err
			}
			releases = append(releases, postgres.Release{EventID: canonical(ev.GetEventId()), OrderID: canonical(ev.GetOrderId()), Reason: ev.GetReason()})
		}
		released, err := h.store.Release(ctx, queue, releases, announceRelease)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		for _, rel := range released {
			h.log.InfoContext(ctx, "inventory released",
				"order_id", rel.Release.OrderID, "event_id", rel.Release.EventID, "reservation_id", rel.ReservationID)
		}
		return nil
	}
}

// toItems converts an event's lines. Lines that break the contract make the event invalid:
// order-service accepts only UUID product ids and positive quantities.
func toItems(ev *paymentv1.PaymentApproved) ([]inventory.Item, error) {
	if len(ev.GetItems()) == 0 {
		return nil, broker.Invalid("payment.approved %s: no items", ev.GetEventId())
	}
	items := make([]inventory.Item, len(ev.GetItems()))
	for i, line := range ev.GetItems() {
		id, err := inventory.ParseProductID(line.GetProductId())
		if err != nil {
			return nil, broker.Invalid("payment.approved %s: items[%d].product_id: %v", ev.GetEventId(), i, err)
		}
		if line.GetQuantity() <= 0 {
			return nil, broker.Invalid("payment.approved %s: items[%d].quantity: %d is not positive", ev.GetEventId(), i, line.GetQuantity())
		}
		items[i] = inventory.Item{ProductID: id, Quantity: int64(line.GetQuantity())}
	}
	return items, nil
}

// canonical spells a UUID, already validated by broker.Decode, as the database does, so that
// ids read back (inbox claims, reservations) compare equal.
func canonical(id string) string {
	return uuid.MustParse(id).String()
}

func announceReservation(ev *paymentv1.PaymentApproved, out postgres.Outcome) outbox.Event {
	id := uuid.NewString()
	if out.Err != nil {
		return outbox.Event{ID: id, OrderID: out.Order.OrderID, RoutingKey: broker.InventoryFailed, Payload: &inventoryv1.InventoryFailed{
			EventId:   id,
			OrderId:   out.Order.OrderID,
			OccurTime: timestamppb.Now(),
			Reason:    out.Err.Error(),
		}}
	}
	return outbox.Event{ID: id, OrderID: out.Order.OrderID, RoutingKey: broker.InventoryReserved, Payload: &inventoryv1.InventoryReserved{
		EventId:       id,
		OrderId:       out.Order.OrderID,
		OccurTime:     timestamppb.Now(),
		ReservationId: out.ReservationID,
		Items:         ev.GetItems(),
		CountryCode:   ev.GetCountryCode(),
	}}
}

func announceRelease(rel postgres.Released) outbox.Event {
	id := uuid.NewString()
	reason := "shipping failed"
	if rel.Release.Reason != "" {
		reason += ": " + rel.Release.Reason
	}
	return outbox.Event{ID: id, OrderID: rel.Release.OrderID, RoutingKey: broker.InventoryReleased, Payload: &inventoryv1.InventoryReleased{
		EventId:       id,
		OrderId:       rel.Release.OrderID,
		OccurTime:     timestamppb.Now(),
		ReservationId: rel.ReservationID,
		Reason:        reason,
	}}
}
