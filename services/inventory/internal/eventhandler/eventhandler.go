// Package eventhandler holds inventory-service's rules for the events it consumes:
// payment.approved reserves an order's items, all or nothing; shipping.failed gives them back;
// order.cancelled gives them back too, or makes sure they are never taken.
// The unit of work around them (decoding, inbox, outbox, transaction) is pkg/unitofwork's.
//
// Every rule takes its locks in one order: first the reservation of each order of the batch
// (an order's one reservation row, or the unique key a new one takes), by order id, in one
// statement; then the products, by id, in one statement; its writes at the commit touch only
// rows it holds. Batches therefore wait for each other in one direction and never deadlock,
// and a reservation decides with its orders settled: a cancellation cannot slip in between
// the stock read and the reservation's insert.
package eventhandler

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

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
	// ClaimReservations takes a new reservation, holding nothing yet, for each of the orders
	// that has none, in order id order, and returns its id by order. An order that has one
	// (reserved before, or a cancellation's tombstone) is left out; one being inserted by
	// another transaction is waited for.
	ClaimReservations(ctx context.Context, orderIDs []string) (map[string]string, error)
	// SaveReservations stores the items of claimed reservations that hold stock and removes
	// the claimed reservations, by id, that hold nothing.
	SaveReservations(ctx context.Context, held []inventory.Reservation, unused []string) error
	// LockProducts locks the products with the given ids in id order and returns those that exist.
	LockProducts(ctx context.Context, ids []string) (map[string]*inventory.Product, error)
	// SaveStock writes the reserved quantity of products.
	SaveStock(ctx context.Context, products []*inventory.Product) error
	// InsertTombstones stores a CANCELLED reservation, holding nothing, for each of the orders
	// that has none and locks the reservation of each of the others, in order id order, and
	// returns the orders tombstoned.
	InsertTombstones(ctx context.Context, orderIDs []string) (map[string]bool, error)
	// LockReserved loads and locks, in order id order, the reservations of orders that are
	// still held.
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
// inventory.failed. An order reserved or cancelled before is left alone.
func (r *rules) reserve(ctx context.Context, s Store, evs []unitofwork.Event[*paymentv1.PaymentApproved]) ([]outbox.Event, error) {
	orders := make([]string, len(evs))
	for i, ev := range evs {
		orders[i] = ev.OrderID
	}
	// The orders first, then their products (see the package doc): a cancellation committing
	// meanwhile has left its tombstone, or waits for this batch and then releases what it took.
	claimed, err := s.ClaimReservations(ctx, orders)
	if err != nil {
		return nil, err
	}
	var all []inventory.Item
	items := make([][]inventory.Item, len(evs))
	for i, ev := range evs {
		if _, ok := claimed[ev.OrderID]; ok {
			items[i] = toItems(ev.Msg)
			all = append(all, items[i]...)
		}
	}
	var products map[string]*inventory.Product
	if len(all) > 0 {
		if products, err = s.LockProducts(ctx, inventory.ProductIDs(all)); err != nil {
			return nil, err
		}
	}
	var (
		out     []outbox.Event // in batch order
		held    []inventory.Reservation
		changed = map[string]*inventory.Product{}
	)
	for i, ev := range evs {
		log := r.log.With("order_id", ev.OrderID, "event_id", ev.ID)
		id, ok := claimed[ev.OrderID]
		if !ok {
			log.DebugContext(ctx, "order already reserved or cancelled, event ignored")
			continue
		}
		if err := inventory.Reserve(products, items[i]); err != nil {
			log.DebugContext(ctx, "inventory reservation failed", "reason", err.Error())
			out = append(out, announceFailure(ev.OrderID, err))
			continue
		}
		delete(claimed, ev.OrderID) // taken: a later event of the same order is ignored
		res := inventory.Reservation{ID: id, OrderID: ev.OrderID, Items: inventory.Merge(items[i])}
		for _, it := range res.Items {
			changed[it.ProductID] = products[it.ProductID]
		}
		held = append(held, res)
		log.DebugContext(ctx, "inventory reserved", "reservation_id", res.ID)
		out = append(out, announceReservation(ev.Msg, res))
	}
	// What is left claimed are the orders that failed: they keep no reservation.
	if err := s.SaveReservations(ctx, held, slices.Collect(maps.Values(claimed))); err != nil {
		return nil, err
	}
	if err := s.SaveStock(ctx, values(changed)); err != nil {
		return nil, err
	}
	return out, nil
}

// cancel settles the reservations of cancelled orders: an order without one gets a CANCELLED
// reservation holding nothing, which takes its place for good, so that a payment.approved
// arriving later reserves nothing; a held reservation is released and inventory.released
// announced; a released one stays so.
//
// The tombstones are inserted, and the other orders' reservations locked, before any product:
// a reservation of the same order committing at the same time either waits for this batch and
// then finds the tombstone, or this batch waits for it and then releases it.
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
