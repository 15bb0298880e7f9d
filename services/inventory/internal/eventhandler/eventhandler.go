// Package eventhandler holds inventory-service's rules for the events it consumes:
// payment.approved reserves an order's items, all or nothing; shipping.failed gives them back;
// order.cancelled gives them back too, or makes sure they are never taken.
// The unit of work around them (decoding, inbox, outbox, transaction) is pkg/unitofwork's.
package eventhandler

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Store is what the rules need from storage, within the batch's transaction.
type Store interface {
	// LockProducts locks the products with the given ids in id order and returns those that exist.
	LockProducts(ctx context.Context, ids []string) (map[string]*inventory.Product, error)
	// Reserved reports which of the orders have a reservation, whatever its status.
	Reserved(ctx context.Context, orderIDs []string) (map[string]bool, error)
	// SaveStock writes the reserved quantity of products.
	SaveStock(ctx context.Context, products []*inventory.Product) error
	// InsertReservations stores new reservations, except for orders that have one (a
	// cancellation's tombstone), and returns the ids stored.
	InsertReservations(ctx context.Context, rs []inventory.Reservation) (map[string]bool, error)
	// InsertTombstones stores a CANCELLED reservation, holding nothing, for each of the orders
	// that has none, and returns those orders.
	InsertTombstones(ctx context.Context, orderIDs []string) (map[string]bool, error)
	// LockReserved loads and locks the reservations of orders that are still held.
	LockReserved(ctx context.Context, orderIDs []string) ([]inventory.Reservation, error)
	// MarkReleased records reservations as given back.
	MarkReleased(ctx context.Context, ids []string) error
}

// Register adds inventory-service's rules to svc.
func Register(svc *unitofwork.Service[Store], log *slog.Logger) {
	r := &rules{log: log}
	unitofwork.On(svc, catalog.PaymentApproved, validateApproved, r.reserve)
	unitofwork.On(svc, catalog.ShippingFailed, nil, func(ctx context.Context, s Store, evs []unitofwork.Event[*shippingv1.ShippingFailed]) ([]outbox.Event, error) {
		return r.release(ctx, s, releases(evs, func(ev *shippingv1.ShippingFailed) string { return join("shipping failed", ev.GetReason()) }))
	})
	unitofwork.On(svc, catalog.OrderCancelled, nil, r.cancel)
}

type rules struct {
	log *slog.Logger
}

// reserve reserves the items of paid orders, all or nothing per order, in batch order so that a
// later order sees what an earlier one took, and announces inventory.reserved or
// inventory.failed. Every product of the batch is locked up front, in id order, so concurrent
// batches never deadlock and never oversell. An order reserved before is left alone.
func (r *rules) reserve(ctx context.Context, s Store, evs []unitofwork.Event[*paymentv1.PaymentApproved]) ([]outbox.Event, error) {
	var all []inventory.Item
	orders := make([]string, len(evs))
	items := make([][]inventory.Item, len(evs))
	for i, ev := range evs {
		items[i] = toItems(ev.Msg)
		all = append(all, items[i]...)
		orders[i] = ev.OrderID
	}
	products, err := s.LockProducts(ctx, inventory.ProductIDs(all))
	if err != nil {
		return nil, err
	}
	// Read after the locks: a concurrent batch reserving the same order has committed by now.
	reserved, err := s.Reserved(ctx, orders)
	if err != nil {
		return nil, err
	}
	var (
		announce = make([]*outbox.Event, len(evs)) // in batch order
		created  []inventory.Reservation
		from     []int // the event of each created reservation
		changed  = map[string]*inventory.Product{}
	)
	for i, ev := range evs {
		log := r.log.With("order_id", ev.OrderID, "event_id", ev.ID)
		if reserved[ev.OrderID] {
			log.DebugContext(ctx, "order already reserved or cancelled, event ignored")
			continue
		}
		if err := inventory.Reserve(products, items[i]); err != nil {
			log.DebugContext(ctx, "inventory reservation failed", "reason", err.Error())
			failed := announceFailure(ev.OrderID, err)
			announce[i] = &failed
			continue
		}
		reserved[ev.OrderID] = true
		res := inventory.Reservation{ID: newID(), OrderID: ev.OrderID, Items: inventory.Merge(items[i])}
		for _, it := range res.Items {
			changed[it.ProductID] = products[it.ProductID]
		}
		created = append(created, res)
		from = append(from, i)
	}
	// An order's cancellation committing since Reserved read left a tombstone in the way: its
	// stock goes back before it is saved, and nothing is announced.
	stored, err := s.InsertReservations(ctx, created)
	if err != nil {
		return nil, err
	}
	for i, res := range created {
		if !stored[res.ID] {
			if err := inventory.Release(products, res.Items); err != nil {
				return nil, fmt.Errorf("undo reservation %s: %w", res.ID, err)
			}
			r.log.DebugContext(ctx, "order cancelled meanwhile, nothing reserved", "order_id", res.OrderID)
			continue
		}
		r.log.DebugContext(ctx, "inventory reserved", "order_id", res.OrderID, "reservation_id", res.ID)
		ok := announceReservation(evs[from[i]].Msg, res)
		announce[from[i]] = &ok
	}
	if err := s.SaveStock(ctx, values(changed)); err != nil {
		return nil, err
	}
	var out []outbox.Event
	for _, a := range announce {
		if a != nil {
			out = append(out, *a)
		}
	}
	return out, nil
}

// cancel settles the reservations of cancelled orders: an order without one gets a CANCELLED
// reservation holding nothing, which takes its place for good, so that a payment.approved
// arriving later reserves nothing; a held reservation is released and inventory.released
// announced; a released one stays so.
//
// The tombstones are inserted first, under the unique order id: a reservation of the same order
// committing at the same time either waits for this batch and then finds the tombstone, or this
// batch waits for it and then releases it.
func (r *rules) cancel(ctx context.Context, s Store, evs []unitofwork.Event[*orderv1.OrderCancelled]) ([]outbox.Event, error) {
	orders := make([]string, len(evs))
	for i, ev := range evs {
		orders[i] = ev.OrderID
	}
	tombstoned, err := s.InsertTombstones(ctx, orders)
	if err != nil {
		return nil, err
	}
	var rest []unitofwork.Event[*orderv1.OrderCancelled]
	for _, ev := range evs {
		if tombstoned[ev.OrderID] {
			r.log.DebugContext(ctx, "order cancelled before its reservation: nothing will be reserved",
				"order_id", ev.OrderID, "event_id", ev.ID)
			continue
		}
		rest = append(rest, ev)
	}
	return r.release(ctx, s, releases(rest, func(ev *orderv1.OrderCancelled) string { return join("order cancelled", ev.GetReason()) }))
}

// releases maps events to the orders whose reservations they release, each with the reason of
// its first event.
func releases[T unitofwork.Message](evs []unitofwork.Event[T], reason func(T) string) map[string]string {
	reasons := make(map[string]string, len(evs))
	for _, ev := range evs {
		if _, seen := reasons[ev.OrderID]; !seen {
			reasons[ev.OrderID] = reason(ev.Msg)
		}
	}
	return reasons
}

func join(what, reason string) string {
	if reason == "" {
		return what
	}
	return what + ": " + reason
}

// release gives back the held reservations of orders, keyed to the reason, and announces
// inventory.released. An order without a reservation, or whose reservation was released
// already, is left alone.
func (r *rules) release(ctx context.Context, s Store, reasons map[string]string) ([]outbox.Event, error) {
	if len(reasons) == 0 {
		return nil, nil
	}
	orders := make([]string, 0, len(reasons))
	for id := range reasons {
		orders = append(orders, id)
	}
	held, err := s.LockReserved(ctx, orders)
	if err != nil || len(held) == 0 {
		return nil, err
	}
	var all []inventory.Item
	for _, res := range held {
		all = append(all, res.Items...)
	}
	products, err := s.LockProducts(ctx, inventory.ProductIDs(all))
	if err != nil {
		return nil, err
	}
	changed := map[string]*inventory.Product{}
	ids := make([]string, len(held))
	var out []outbox.Event
	for i, res := range held {
		if err := inventory.Release(products, res.Items); err != nil {
			return nil, fmt.Errorf("release reservation %s: %w", res.ID, err)
		}
		for _, it := range res.Items {
			changed[it.ProductID] = products[it.ProductID]
		}
		ids[i] = res.ID
		r.log.DebugContext(ctx, "inventory released", "order_id", res.OrderID, "reservation_id", res.ID)
		out = append(out, announceRelease(res, reasons[res.OrderID]))
	}
	if err := s.SaveStock(ctx, values(changed)); err != nil {
		return nil, err
	}
	if err := s.MarkReleased(ctx, ids); err != nil {
		return nil, err
	}
	return out, nil
}

func values(m map[string]*inventory.Product) []*inventory.Product {
	out := make([]*inventory.Product, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out
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
	id := newID()
	return outbox.Event{ID: id, OrderID: orderID, RoutingKey: catalog.InventoryFailed, Payload: &inventoryv1.InventoryFailed{
		EventId:   id,
		OrderId:   orderID,
		OccurTime: timestamppb.Now(),
		Reason:    reason.Error(),
	}}
}

func announceReservation(ev *paymentv1.PaymentApproved, res inventory.Reservation) outbox.Event {
	id := newID()
	return outbox.Event{ID: id, OrderID: res.OrderID, RoutingKey: catalog.InventoryReserved, Payload: &inventoryv1.InventoryReserved{
		EventId:       id,
		OrderId:       res.OrderID,
		OccurTime:     timestamppb.Now(),
		ReservationId: res.ID,
		Items:         ev.GetItems(),
		CountryCode:   ev.GetCountryCode(),
	}}
}

func announceRelease(res inventory.Reservation, reason string) outbox.Event {
	id := newID()
	return outbox.Event{ID: id, OrderID: res.OrderID, RoutingKey: catalog.InventoryReleased, Payload: &inventoryv1.InventoryReleased{
		EventId:       id,
		OrderId:       res.OrderID,
		OccurTime:     timestamppb.Now(),
		ReservationId: res.ID,
		Reason:        reason,
	}}
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
