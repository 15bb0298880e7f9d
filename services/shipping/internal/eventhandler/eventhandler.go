// Package eventhandler holds shipping-service's rules for the events it consumes: schedule the
// shipment of each order whose stock is reserved, once; and call it off, or make sure it never
// happens, when order-service cancels the order at its deadline. The unit of work around it (decoding,
// inbox, outbox, transaction) is pkg/unitofwork's.
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
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Store is what the rule needs from storage, within the batch's transaction.
type Store interface {
	// Insert stores new shipments, except for orders that have one, and returns the ids stored.
	Insert(ctx context.Context, shipments []*shipping.Shipment) (map[string]bool, error)
	// Lock loads and locks the shipments of orders, keyed by order id.
	Lock(ctx context.Context, orderIDs []string) (map[string]*shipping.Shipment, error)
	// Save writes the status and reason of changed shipments.
	Save(ctx context.Context, shipments []*shipping.Shipment) error
}

// Register adds shipping-service's rules to svc.
func Register(svc *unitofwork.Service[Store], carrier *shipping.Carrier, log *slog.Logger) {
	r := &rules{carrier: carrier, log: log}
	unitofwork.On(svc, catalog.InventoryReserved, validateReserved, r.schedule)
	unitofwork.On(svc, catalog.OrderCancelled, nil, r.cancel)
}

type rules struct {
	carrier *shipping.Carrier
	log     *slog.Logger
}

// schedule asks the carrier about each order and announces the outcome: shipping.scheduled, or
// shipping.failed with the reason. An order shipped already keeps its shipment, and nothing is
// announced again.
func (r *rules) schedule(ctx context.Context, s Store, evs []unitofwork.Event[*inventoryv1.InventoryReserved]) ([]outbox.Event, error) {
	shipments := make([]*shipping.Shipment, len(evs))
	for i, ev := range evs {
		sh, err := r.carrier.Schedule(newID(), ev.OrderID, ev.Msg.GetCountryCode(), units(ev.Msg))
		if err != nil {
			return nil, unitofwork.Reject(ev.ID, err)
		}
		shipments[i] = sh
	}
	stored, err := s.Insert(ctx, shipments)
	if err != nil {
		return nil, err
	}
	var out []outbox.Event
	for i, sh := range shipments {
		if !stored[sh.ID()] {
			continue
		}
		r.log.DebugContext(ctx, "shipment decided", "order_id", sh.OrderID(), "event_id", evs[i].ID, "shipment_id", sh.ID(),
			"status", sh.Status(), "reason", sh.Reason(), "tracking_code", sh.TrackingCode(), "freight_minor", sh.FreightMinor())
		out = append(out, announce(sh))
	}
	return out, nil
}

// cancel settles the shipments of cancelled orders: an order without one gets a CANCELLED
// shipment, which takes its place for good, so that an inventory.reserved arriving later ships
// nothing; a scheduled shipment is called off; a failed one stays so. Nothing is announced:
// the order is cancelled already, and inventory and payment undo their part on order.cancelled.
//
// The tombstones are inserted first, under the unique order id: a shipment of the same order
// committing at the same time either waits for this batch and then finds the tombstone, or this
// batch waits for it and then calls it off.
func (r *rules) cancel(ctx context.Context, s Store, evs []unitofwork.Event[*orderv1.OrderCancelled]) ([]outbox.Event, error) {
	now := time.Now()
	tombstones := make([]*shipping.Shipment, len(evs))
	reasons := make(map[string]string, len(evs))
	for i, ev := range evs {
		reason := "order cancelled: " + ev.Msg.GetReason()
		t, err := shipping.Tombstone(newID(), ev.OrderID, reason, now)
		if err != nil {
			return nil, unitofwork.Reject(ev.ID, err)
		}
		tombstones[i] = t
		if _, seen := reasons[ev.OrderID]; !seen {
			reasons[ev.OrderID] = reason
		}
	}
	stored, err := s.Insert(ctx, tombstones)
	if err != nil {
		return nil, err
	}
	var rest []string
	for i, t := range tombstones {
		if stored[t.ID()] {
			r.log.DebugContext(ctx, "order cancelled before its shipment: nothing will be shipped",
				"order_id", t.OrderID(), "event_id", evs[i].ID)
			continue
		}
		rest = append(rest, t.OrderID())
	}
	if len(rest) == 0 {
		return nil, nil
	}
	shipments, err := s.Lock(ctx, rest)
	if err != nil {
		return nil, err
	}
	var changed []*shipping.Shipment
	for _, sh := range shipments {
		if sh.Cancel(reasons[sh.OrderID()]) {
			r.log.DebugContext(ctx, "shipment called off", "order_id", sh.OrderID(), "shipment_id", sh.ID(),
				"tracking_code", sh.TrackingCode())
			changed = append(changed, sh)
		}
	}
	return nil, s.Save(ctx, changed)
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
	id := newID()
	if s.Scheduled() {
		return outbox.Event{ID: id, OrderID: s.OrderID(), RoutingKey: catalog.ShippingScheduled, Payload: &shippingv1.ShippingScheduled{
			EventId:               id,
			OrderId:               s.OrderID(),
			OccurTime:             timestamppb.New(s.CreatedAt()),
			ShipmentId:            s.ID(),
			TrackingCode:          s.TrackingCode(),
			FreightMinor:          s.FreightMinor(),
			EstimatedDeliveryTime: timestamppb.New(s.EstimatedDelivery()),
		}}
	}
	return outbox.Event{ID: id, OrderID: s.OrderID(), RoutingKey: catalog.ShippingFailed, Payload: &shippingv1.ShippingFailed{
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
