// Package eventhandler holds order-service's rule for the saga events it consumes: each moves an
// order by the transition table of the order domain. The unit of work around it
// (decoding, inbox, transaction, batching) is the runner's.
package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Store is what the rule needs from storage, within the event's unit of work. The event's
// order is read ahead and locked by then; writes take effect at the commit.
type Store interface {
	// Order returns the saga state of an order, as this unit of work left it, or nil when the
	// order does not exist.
	Order(ctx context.Context, id string) (*order.Order, error)
	// Record stores the change of an order's status and the order as it is now.
	Record(o *order.Order, c order.Change)
}

// Register adds order-service's rules to reg: one per event it consumes.
func Register(reg *rules.Registry[Store], log *slog.Logger) {
	a := &applier{log: log}
	rules.On(reg, catalog.PaymentApproved, nil, rule(a, order.PaymentApproved, func(*paymentv1.PaymentApproved, *order.Event) {}))
	rules.On(reg, catalog.PaymentFailed, nil, rule(a, order.PaymentFailed, func(ev *paymentv1.PaymentFailed, e *order.Event) {
		e.Reason = ev.GetReason()
	}))
	rules.On(reg, catalog.PaymentReversed, nil, rule(a, order.PaymentReversed, func(ev *paymentv1.PaymentReversed, e *order.Event) {
		e.Reason = ev.GetReason()
	}))
	rules.On(reg, catalog.InventoryReserved, nil, rule(a, order.InventoryReserved, func(*inventoryv1.InventoryReserved, *order.Event) {}))
	rules.On(reg, catalog.InventoryFailed, nil, rule(a, order.InventoryFailed, func(ev *inventoryv1.InventoryFailed, e *order.Event) {
		e.Reason = ev.GetReason()
	}))
	rules.On(reg, catalog.ShippingScheduled, validateScheduled, rule(a, order.ShippingScheduled, func(ev *shippingv1.ShippingScheduled, e *order.Event) {
		e.TrackingCode = ev.GetTrackingCode()
	}))
	rules.On(reg, catalog.ShippingFailed, nil, rule(a, order.ShippingFailed, func(ev *shippingv1.ShippingFailed, e *order.Event) {
		e.Reason = ev.GetReason()
	}))
}

func validateScheduled(ev *shippingv1.ShippingScheduled) error {
	if ev.GetTrackingCode() == "" {
		return failure.Invalid("no tracking_code")
	}
	return nil
}

// rule turns an event of one kind into the domain's event and applies it.
func rule[T rules.Message](a *applier, kind order.EventKind, fill func(T, *order.Event)) rules.Rule[Store, T] {
	return func(ctx context.Context, s Store, ev rules.Event[T]) ([]outbox.Event, error) {
		e := order.Event{ID: ev.ID, OrderID: ev.OrderID, Kind: kind}
		fill(ev.Msg, &e)
		return nil, a.apply(ctx, s, e)
	}
}

type applier struct {
	log *slog.Logger
}

// apply moves the order the event names by the transition rules. An event naming no stored
// order is refused: an order's events only exist after its creation committed, so such an
// event is bogus.
func (a *applier) apply(ctx context.Context, s Store, e order.Event) error {
	o, err := s.Order(ctx, e.OrderID)
	if err != nil {
		return err
	}
	if o == nil {
		return failure.Permanent(fmt.Errorf("%w: %s", order.ErrNotFound, e.OrderID))
	}
	change, changed, err := o.Apply(e, time.Now())
	if errors.Is(err, order.ErrUnknownEvent) {
		return failure.Permanent(err)
	}
	if err != nil || !changed {
		return err
	}
	s.Record(o, order.Change{Event: e, StatusChange: change, Update: o.Update(change)})
	a.log.DebugContext(ctx, "order status changed", "order_id", e.OrderID, "event_id", e.ID,
		"event", string(e.Kind), "status", string(change.Status), "reason", change.Reason)
	return nil
}
