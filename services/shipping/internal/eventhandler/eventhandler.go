// Package eventhandler turns the events shipping-service consumes into shipments: it decodes
// and validates each batch, lets the carrier decide, and hands the batch to the repository,
// which applies it in one transaction.
package eventhandler

import (
	"context"
	"log/slog"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Service is the consumer name of shipping-service in the event catalog.
const Service = "shipping"

// Handler handles shipping-service's events.
type Handler struct {
	repo    *postgres.Repository
	carrier *shipping.Carrier
	log     *slog.Logger
}

// New returns the handler.
func New(repo *postgres.Repository, carrier *shipping.Carrier, log *slog.Logger) *Handler {
	return &Handler{repo: repo, carrier: carrier, log: log}
}

// ByRoutingKey returns the broker handler of each event shipping-service consumes.
func (h *Handler) ByRoutingKey() map[string]broker.Handler {
	return map[string]broker.Handler{
		broker.InventoryReserved: h.InventoryReserved,
	}
}

// InventoryReserved schedules the shipment of each order whose stock is reserved, once, and
// announces the outcome: shipping.scheduled, or shipping.failed with the reason.
func (h *Handler) InventoryReserved(ctx context.Context, batch []amqp.Delivery) error {
	news := make([]postgres.NewShipment, 0, len(batch))
	for _, d := range batch {
		var ev inventoryv1.InventoryReserved
		if err := broker.Decode(d, &ev); err != nil {
			return err
		}
		units, err := units(&ev)
		if err != nil {
			return err
		}
		s, err := h.carrier.Schedule(newID(), ev.GetOrderId(), ev.GetCountryCode(), units)
		if err != nil {
			return broker.Permanent(err)
		}
		news = append(news, postgres.NewShipment{EventID: ev.GetEventId(), Shipment: s, Announce: announce(s)})
	}
	queue := broker.Subscription{Consumer: Service, RoutingKey: broker.InventoryReserved}.Queue()
	stored, err := h.repo.Create(ctx, queue, news)
	if err != nil {
		return err
	}
	for _, ns := range stored {
		s := ns.Shipment
		h.log.InfoContext(ctx, "shipment decided", "order_id", s.OrderID(), "event_id", ns.EventID, "shipment_id", s.ID(),
			"status", s.Status(), "reason", s.Reason(), "tracking_code", s.TrackingCode(), "freight_minor", s.FreightMinor())
	}
	return nil
}

// units counts the item units to ship; an event without items cannot be priced.
func units(ev *inventoryv1.InventoryReserved) (int64, error) {
	if len(ev.GetItems()) == 0 {
		return 0, broker.Invalid("inventory.reserved %s: no items", ev.GetEventId())
	}
	var n int64
	for i, it := range ev.GetItems() {
		if it.GetQuantity() <= 0 {
			return 0, broker.Invalid("inventory.reserved %s: items[%d].quantity %d not positive", ev.GetEventId(), i, it.GetQuantity())
		}
		n += int64(it.GetQuantity())
	}
	return n, nil
}

func announce(s *shipping.Shipment) outbox.Event {
	id := newID()
	if s.Scheduled() {
		return outbox.Event{ID: id, OrderID: s.OrderID(), RoutingKey: broker.ShippingScheduled, Payload: &shippingv1.ShippingScheduled{
			EventId:               id,
			OrderId:               s.OrderID(),
			OccurTime:             timestamppb.New(s.CreatedAt()),
			ShipmentId:            s.ID(),
			TrackingCode:          s.TrackingCode(),
			FreightMinor:          s.FreightMinor(),
			EstimatedDeliveryTime: timestamppb.New(s.EstimatedDelivery()),
		}}
	}
	return outbox.Event{ID: id, OrderID: s.OrderID(), RoutingKey: broker.ShippingFailed, Payload: &shippingv1.ShippingFailed{
		EventId:   id,
		OrderId:   s.OrderID(),
		OccurTime: timestamppb.New(s.CreatedAt()),
		Reason:    s.Reason(),
	}}
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
