// Package eventhandler holds inventory-service's rules for the events it consumes:
// payment.approved reserves an order's items, all or nothing; shipping.failed gives them back;
// order.cancelled gives them back too, or makes sure they are never taken. The unit of work
// around them (decoding, inbox, outbox, transaction, batching) is the runner's: it holds the
// event's order for the whole unit of work, so a cancellation and a reservation of one order
// never interleave, and the store locks the products a batch touches in id order.
package eventhandler

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Store is what the rules need from storage, within the event's unit of work. The
// reservation of the event's order and the products it names or holds are read ahead and
// locked by then; writes take effect at the commit.
type Store interface {
	// Reservation returns the reservation of an order (held, released, or the tombstone of a
	// cancellation), as this unit of work left it, or nil.
	Reservation(ctx context.Context, orderID string) (*inventory.Reservation, error)
	// Products returns the products with the given ids that exist, locked.
	Products(ctx context.Context, ids []string) (map[string]*inventory.Product, error)
	// AddReservation stores the new reservation of an order that has none.
	AddReservation(r *inventory.Reservation)
	// SaveReservation writes a reservation's changed status.
	SaveReservation(r *inventory.Reservation)
	// SaveStock writes the reserved quantity of products.
	SaveStock(products map[string]*inventory.Product)
}

// Register adds inventory-service's rules to reg.
func Register(reg *rules.Registry[Store], log *slog.Logger) {
	r := &inventoryRules{log: log}
	rules.On(reg, catalog.PaymentApproved, validateApproved, r.reserve)
	rules.On(reg, catalog.ShippingFailed, nil, func(ctx context.Context, s Store, ev rules.Event[*shippingv1.ShippingFailed]) ([]outbox.Event, error) {
		return r.release(ctx, s, ev.ID, ev.OrderID, join("shipping failed", ev.Msg.GetReason()))
	})
	rules.On(reg, catalog.OrderCancelled, nil, r.cancel)
}

type inventoryRules struct {
	log *slog.Logger
}

// reserve reserves the items of a paid order, all or nothing, and announces inventory.reserved
// or inventory.failed. An order reserved or cancelled before is left alone.
func (r *inventoryRules) reserve(ctx context.Context, s Store, ev rules.Event[*paymentv1.PaymentApproved]) ([]outbox.Event, error) {
	log := r.log.With("order_id", ev.OrderID, "event_id", ev.ID)
	if prior, err := s.Reservation(ctx, ev.OrderID); err != nil || prior != nil {
		if prior != nil {
			log.DebugContext(ctx, "order already reserved or cancelled, event ignored", "status", prior.Status)
		}
		return nil, err
	}
	items := toItems(ev.Msg)
	products, err := s.Products(ctx, inventory.ProductIDs(items))
	if err != nil {
		return nil, err
	}
	if err := inventory.Reserve(products, items); err != nil {
		log.DebugContext(ctx, "inventory reservation failed", "reason", err.Error())
		return []outbox.Event{announceFailure(ev.OrderID, err)}, nil
	}
	res := &inventory.Reservation{ID: newID(), OrderID: ev.OrderID, Status: inventory.Held, Items: inventory.Merge(items)}
	s.AddReservation(res)
	s.SaveStock(products)
	log.DebugContext(ctx, "inventory reserved", "reservation_id", res.ID)
	return []outbox.Event{announceReservation(ev.Msg, res)}, nil
}

// cancel settles the reservation of a cancelled order: an order without one gets a CANCELLED
// reservation holding nothing, which takes its place for good, so that a payment.approved
// arriving later reserves nothing; a held reservation is released and inventory.released
// announced; a released one stays so.
func (r *inventoryRules) cancel(ctx context.Context, s Store, ev rules.Event[*orderv1.OrderCancelled]) ([]outbox.Event, error) {
	res, err := s.Reservation(ctx, ev.OrderID)
	if err != nil {
		return nil, err
	}
	if res == nil {
		s.AddReservation(&inventory.Reservation{ID: newID(), OrderID: ev.OrderID, Status: inventory.Cancelled})
		r.log.DebugContext(ctx, "order cancelled before its reservation: nothing will be reserved",
			"order_id", ev.OrderID, "event_id", ev.ID)
		return nil, nil
	}
	return r.release(ctx, s, ev.ID, ev.OrderID, join("order cancelled", ev.Msg.GetReason()))
}

func join(what, reason string) string {
	if reason == "" {
		return what
	}
	return what + ": " + reason
}

// release gives back the held reservation of an order and announces inventory.released. An
// order without a reservation, or whose reservation was released already, is left alone.
func (r *inventoryRules) release(ctx context.Context, s Store, eventID, orderID, reason string) ([]outbox.Event, error) {
	res, err := s.Reservation(ctx, orderID)
	if err != nil || res == nil || res.Status != inventory.Held {
		return nil, err
	}
	products, err := s.Products(ctx, inventory.ProductIDs(res.Items))
	if err != nil {
		return nil, err
	}
	if err := inventory.Release(products, res.Items); err != nil {
		return nil, fmt.Errorf("release reservation %s: %w", res.ID, err)
	}
	res.Status = inventory.Released
	s.SaveReservation(res)
	s.SaveStock(products)
	r.log.DebugContext(ctx, "inventory released", "order_id", orderID, "event_id", eventID, "reservation_id", res.ID)
	return []outbox.Event{announceRelease(res, reason)}, nil
}

// validateApproved refuses lines that break the contract: order-service accepts only UUID
// product ids and positive quantities.
func validateApproved(ev *paymentv1.PaymentApproved) error {
	if len(ev.GetItems()) == 0 {
		return failure.Invalid("no items")
	}
	for i, line := range ev.GetItems() {
		if _, err := inventory.ParseProductID(line.GetProductId()); err != nil {
			return failure.Invalid("items[%d].product_id: %v", i, err)
		}
		if line.GetQuantity() <= 0 {
			return failure.Invalid("items[%d].quantity: %d is not positive", i, line.GetQuantity())
		}
	}
	return nil
}

// toItems converts an event's lines, validated already, with canonical product ids.
func toItems(ev *paymentv1.PaymentApproved) []inventory.Item {
	items := make([]inventory.Item, len(ev.GetItems()))
	for i, line := range ev.GetItems() {
		id, _ := inventory.ParseProductID(line.GetProductId())
		items[i] = inventory.Item{ProductID: id, Quantity: int64(line.GetQuantity())}
	}
	return items
}

func announceFailure(orderID string, reason error) outbox.Event {
	return outbox.New(catalog.InventoryFailed, &inventoryv1.InventoryFailed{
		OrderId: orderID,
		Reason:  reason.Error(),
	})
}

func announceReservation(ev *paymentv1.PaymentApproved, res *inventory.Reservation) outbox.Event {
	return outbox.New(catalog.InventoryReserved, &inventoryv1.InventoryReserved{
		OrderId:       res.OrderID,
		ReservationId: res.ID,
		Items:         ev.GetItems(),
		CountryCode:   ev.GetCountryCode(),
	})
}

func announceRelease(res *inventory.Reservation, reason string) outbox.Event {
	return outbox.New(catalog.InventoryReleased, &inventoryv1.InventoryReleased{
		OrderId:       res.OrderID,
		ReservationId: res.ID,
		Reason:        reason,
	})
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
