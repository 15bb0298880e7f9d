// Package eventhandler holds order-service's rule for the saga events it consumes: each moves an
// order by the transition table of the order domain. The unit of work around it (decoding,
// inbox, transaction) is pkg/unitofwork's.
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
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Store is what the rule needs from storage, within the batch's transaction.
type Store interface {
	// Lock loads and locks the saga state of orders; those that do not exist are missing.
	Lock(ctx context.Context, ids []string) (map[string]*order.Order, error)
	// Save writes the orders that changed and their history.
	Save(ctx context.Context, orders map[string]*order.Order, changes []order.Change) error
}

// Register adds order-service's rules to svc: one per event it consumes.
func Register(svc *unitofwork.Service[Store], log *slog.Logger) {
	a := &applier{log: log}
	unitofwork.On(svc, catalog.PaymentApproved, nil, rule(a, order.PaymentApproved, func(*paymentv1.PaymentApproved, *order.Event) error { return nil }))
	unitofwork.On(svc, catalog.PaymentFailed, nil, rule(a, order.PaymentFailed, func(ev *paymentv1.PaymentFailed, e *order.Event) error {
		e.Reason = ev.GetReason()
		return nil
	}))
	unitofwork.On(svc, catalog.PaymentReversed, nil, rule(a, order.PaymentReversed, func(ev *paymentv1.PaymentReversed, e *order.Event) error {
		e.Reason = ev.GetReason()
		return nil
	}))
	unitofwork.On(svc, catalog.InventoryReserved, nil, rule(a, order.InventoryReserved, func(*inventoryv1.InventoryReserved, *order.Event) error { return nil }))
	unitofwork.On(svc, catalog.InventoryFailed, nil, rule(a, order.InventoryFailed, func(ev *inventoryv1.InventoryFailed, e *order.Event) error {
		e.Reason = ev.GetReason()
		return nil
	}))
	unitofwork.On(svc, catalog.ShippingScheduled, validateScheduled, rule(a, order.ShippingScheduled, func(ev *shippingv1.ShippingScheduled, e *order.Event) error {
		e.TrackingCode = ev.GetTrackingCode()
		return nil
	}))
	unitofwork.On(svc, catalog.ShippingFailed, nil, rule(a, order.ShippingFailed, func(ev *shippingv1.ShippingFailed, e *order.Event) error {
		e.Reason = ev.GetReason()
		return nil
	}))
}

func validateScheduled(ev *shippingv1.ShippingScheduled) error {
	if ev.GetTrackingCode() == "" {
		return failure.Invalid("no tracking_code")
	}
	return nil
}

// rule turns the events of one kind into domain events and applies them.
func rule[T unitofwork.Message](a *applier, kind order.EventKind, fill func(T, *order.Event) error) unitofwork.Rule[Store, T] {
	return func(ctx context.Context, s Store, evs []unitofwork.Event[T]) ([]outbox.Event, error) {
		events := make([]order.Event, len(evs))
		for i, ev := range evs {
			events[i] = order.Event{ID: ev.ID, OrderID: ev.OrderID, Kind: kind}
			if err := fill(ev.Msg, &events[i]); err != nil {
				return nil, unitofwork.Reject(ev.ID, err)
			}
		}
		return nil, a.apply(ctx, s, events)
	}
}

type applier struct {
	log *slog.Logger
}

// apply locks the orders the events name and moves each by the transition rules. An event
// naming no stored order is refused: an order's events only exist after its creation
// committed, so such an event is bogus.
func (a *applier) apply(ctx context.Context, s Store, events []order.Event) error {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.OrderID
	}
	orders, err := s.Lock(ctx, ids)
	if err != nil {
		return err
	}
	now := time.Now()
	var changes []order.Change
	for _, e := range events {
		o, ok := orders[e.OrderID]
		if !ok {
			return unitofwork.Reject(e.ID, fmt.Errorf("%w: %s", order.ErrNotFound, e.OrderID))
		}
		change, changed, err := o.Apply(e, now)
		if errors.Is(err, order.ErrUnknownEvent) {
			return unitofwork.Reject(e.ID, err)
		}
		if err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
		if !changed {
			continue
		}
		changes = append(changes, order.Change{Event: e, StatusChange: change, Update: o.Update(change)})
		a.log.DebugContext(ctx, "order status changed", "order_id", e.OrderID, "event_id", e.ID,
			"event", string(e.Kind), "status", string(change.Status), "reason", change.Reason)
	}
	return s.Save(ctx, orders, changes)
}
