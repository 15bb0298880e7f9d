// Package eventhandler holds shipping-service's rules for the events it consumes: schedule the
// shipment of each order whose stock is reserved, once; and call it off, or make sure it never
// happens, when order-service cancels the order at its deadline. The unit of work around them
// (decoding, inbox, outbox, transaction, batching) is the runner's.
package eventhandler

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Store is what the rules need from storage, within the event's unit of work: the shipments
// of orders, one at most per order, the event's read ahead and locked by then.
type Store = rules.Records[*shipping.Shipment]

// Register adds shipping-service's rules to reg.
func Register(reg *rules.Registry[Store], carrier *shipping.Carrier, log *slog.Logger) {
	r := &shippingRules{carrier: carrier, log: log}
	rules.On(reg, catalog.InventoryReserved, validateReserved, r.schedule)
	rules.On(reg, catalog.OrderCancelled, nil, r.cancel)
}

type shippingRules struct {
	carrier *shipping.Carrier
	log     *slog.Logger
}

// schedule asks the carrier about an order and announces the outcome: shipping.scheduled, or
// shipping.failed with the reason. An order shipped already (or cancelled first) keeps its
// shipment, and nothing is announced again.
func (r *shippingRules) schedule(ctx context.Context, s Store, ev rules.Event[*inventoryv1.InventoryReserved]) ([]outbox.Event, error) {
	sh, added, err := rules.AddFirst(ctx, s, ev.OrderID, func() (*shipping.Shipment, error) {
		return r.carrier.Schedule(newID(), ev.OrderID, ev.Msg.GetCountryCode(), units(ev.Msg))
	})
	if err != nil || !added {
		return nil, err
	}
	r.log.DebugContext(ctx, "shipment decided", "order_id", sh.OrderID(), "event_id", ev.ID, "shipment_id", sh.ID(),
		"status", sh.Status(), "reason", sh.Reason(), "tracking_code", sh.TrackingCode(), "freight_minor", sh.FreightMinor())
	return []outbox.Event{announce(sh)}, nil
}

// cancel settles the shipment of a cancelled order: an order without one gets a CANCELLED
// shipment, which takes its place for good, so that an inventory.reserved arriving later ships
// nothing; a scheduled shipment is called off; a failed one stays so. Nothing is announced:
// the order is cancelled already, and inventory and payment undo their part on order.cancelled.
func (r *shippingRules) cancel(ctx context.Context, s Store, ev rules.Event[*orderv1.OrderCancelled]) ([]outbox.Event, error) {
	reason := "order cancelled: " + ev.Msg.GetReason()
	sh, added, err := rules.AddFirst(ctx, s, ev.OrderID, func() (*shipping.Shipment, error) {
		return shipping.Tombstone(newID(), ev.OrderID, reason, time.Now())
	})
	if err != nil {
		return nil, err
	}
	if added {
		r.log.DebugContext(ctx, "order cancelled before its shipment: nothing will be shipped", "order_id", ev.OrderID, "event_id", ev.ID)
		return nil, nil
	}
	if sh.Cancel(reason) {
		s.Save(sh)
		r.log.DebugContext(ctx, "shipment called off", "order_id", sh.OrderID(), "shipment_id", sh.ID(), "tracking_code", sh.TrackingCode())
	}
	return nil, nil
}

// validateReserved refuses an event whose items cannot be priced.
func validateReserved(ev *inventoryv1.InventoryReserved) error {
	if len(ev.GetItems()) == 0 {
		return failure.Invalid("no items")
	}
	for i, it := range ev.GetItems() {
		if it.GetQuantity() <= 0 {
			return failure.Invalid("items[%d].quantity %d not positive", i, it.GetQuantity())
		}
	}
	return nil
}

// units counts the item units to ship.
func units(ev *inventoryv1.InventoryReserved) int64 {
	var n int64
	for _, it := range ev.GetItems() {
		n += int64(it.GetQuantity())
	}
	return n
}

func announce(s *shipping.Shipment) outbox.Event {
	if s.Scheduled() {
		return outbox.New(catalog.ShippingScheduled, &shippingv1.ShippingScheduled{
			OrderId:               s.OrderID(),
			OccurTime:             timestamppb.New(s.CreatedAt()),
			ShipmentId:            s.ID(),
			TrackingCode:          s.TrackingCode(),
			FreightMinor:          s.FreightMinor(),
			EstimatedDeliveryTime: timestamppb.New(s.EstimatedDelivery()),
		})
	}
	return outbox.New(catalog.ShippingFailed, &shippingv1.ShippingFailed{
		OrderId:   s.OrderID(),
		OccurTime: timestamppb.New(s.CreatedAt()),
		Reason:    s.Reason(),
	})
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
