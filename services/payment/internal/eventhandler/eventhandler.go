// Package eventhandler holds payment-service's rules for the events it consumes: charge each new
// order once, reverse the payment when the saga compensates, and, when order-service cancels
// an order at its deadline, reverse it or make sure it never happens. The unit of work around them
// (decoding, inbox, outbox, transaction) is pkg/unitofwork's.
package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

// Store is what the rules need from storage, within the batch's transaction.
type Store interface {
	// Insert stores new payments, except for orders that have one, and returns the ids stored.
	Insert(ctx context.Context, payments []*payment.Payment) (map[string]bool, error)
	// Lock loads and locks the payments of orders, keyed by order id.
	Lock(ctx context.Context, orderIDs []string) (map[string]*payment.Payment, error)
	// Save writes changed payments.
	Save(ctx context.Context, payments []*payment.Payment) error
}

// Register adds payment-service's rules to svc.
func Register(svc *unitofwork.Service[Store], gateway *payment.Gateway, log *slog.Logger) {
	r := &rules{gateway: gateway, log: log}
	unitofwork.On(svc, catalog.OrderCreated, validateOrderCreated, r.charge)
	unitofwork.On(svc, catalog.InventoryFailed, nil, func(ctx context.Context, s Store, evs []unitofwork.Event[*inventoryv1.InventoryFailed]) ([]outbox.Event, error) {
		return r.reverse(ctx, s, reasons(evs, func(ev *inventoryv1.InventoryFailed) string { return "inventory failed: " + ev.GetReason() }))
	})
	unitofwork.On(svc, catalog.InventoryReleased, nil, func(ctx context.Context, s Store, evs []unitofwork.Event[*inventoryv1.InventoryReleased]) ([]outbox.Event, error) {
		return r.reverse(ctx, s, reasons(evs, func(ev *inventoryv1.InventoryReleased) string { return "inventory released: " + ev.GetReason() }))
	})
	unitofwork.On(svc, catalog.OrderCancelled, nil, r.cancel)
}

type rules struct {
	gateway *payment.Gateway
	log     *slog.Logger
}

// charge charges each new order once and announces the outcome: payment.approved with what
// inventory and shipping need, or payment.failed with the reason. An order that has a payment
// already keeps it, and nothing is announced again.
func (r *rules) charge(ctx context.Context, s Store, evs []unitofwork.Event[*orderv1.OrderCreated]) ([]outbox.Event, error) {
	payments := make([]*payment.Payment, len(evs))
	for i, ev := range evs {
		p, err := payment.Charge(r.gateway, newID(), ev.OrderID, ev.Msg.GetPaymentMethod(), ev.Msg.GetTotalMinor())
		if err != nil {
			return nil, unitofwork.Reject(ev.ID, err)
		}
		payments[i] = p
	}
	stored, err := s.Insert(ctx, payments)
	if err != nil {
		return nil, err
	}
	var out []outbox.Event
	for i, p := range payments {
		if !stored[p.ID()] {
			continue
		}
		r.log.DebugContext(ctx, "payment decided", "order_id", p.OrderID(), "event_id", evs[i].ID, "payment_id", p.ID(),
			"status", p.Status(), "reason", p.Reason(), "amount_minor", p.AmountMinor())
		out = append(out, announceCharge(evs[i].Msg, p))
	}
	return out, nil
}

// validateOrderCreated refuses an order.created that payment cannot act on or that would break
// the services downstream, which receive its items through payment.approved.
func validateOrderCreated(ev *orderv1.OrderCreated) error {
	if ev.GetPaymentMethod() == "" {
		return failure.Invalid("no payment_method")
	}
	if ev.GetTotalMinor() < 0 {
		return failure.Invalid("negative total_minor %d", ev.GetTotalMinor())
	}
	if len(ev.GetItems()) == 0 {
		return failure.Invalid("no items")
	}
	for i, it := range ev.GetItems() {
		if err := uuid.Validate(it.GetProductId()); err != nil {
			return failure.Invalid("items[%d].product_id: %v", i, err)
		}
		if it.GetQuantity() <= 0 {
			return failure.Invalid("items[%d].quantity %d not positive", i, it.GetQuantity())
		}
		if it.GetUnitPriceMinor() < 0 {
			return failure.Invalid("items[%d].unit_price_minor negative", i)
		}
	}
	return nil
}

func announceCharge(ev *orderv1.OrderCreated, p *payment.Payment) outbox.Event {
	id := newID()
	if p.Approved() {
		return outbox.Event{ID: id, OrderID: p.OrderID(), RoutingKey: catalog.PaymentApproved, Payload: &paymentv1.PaymentApproved{
			EventId:     id,
			OrderId:     p.OrderID(),
			OccurTime:   timestamppb.Now(),
			PaymentId:   p.ID(),
			AmountMinor: p.AmountMinor(),
			Items:       ev.GetItems(),
			CountryCode: ev.GetCountryCode(),
		}}
	}
	return outbox.Event{ID: id, OrderID: p.OrderID(), RoutingKey: catalog.PaymentFailed, Payload: &paymentv1.PaymentFailed{
		EventId:   id,
		OrderId:   p.OrderID(),
		OccurTime: timestamppb.Now(),
		PaymentId: p.ID(),
		Reason:    p.Reason(),
	}}
}

// cancel settles the payments of cancelled orders: an order without a payment gets a CANCELLED
// one, which takes its place for good, so that an order.created arriving later charges nothing;
// an approved payment is reversed and payment.reversed announced; any other stays as it is.
//
// The tombstones are inserted first, under the unique order id: a charge of the same order
// committing at the same time either waits for this batch and then finds the tombstone, or
// this batch waits for the charge and then reverses what it charged.
func (r *rules) cancel(ctx context.Context, s Store, evs []unitofwork.Event[*orderv1.OrderCancelled]) ([]outbox.Event, error) {
	reqs := reasons(evs, func(ev *orderv1.OrderCancelled) string { return "order cancelled: " + ev.GetReason() })
	tombstones := make([]*payment.Payment, len(reqs))
	for i, req := range reqs {
		t, err := payment.Tombstone(newID(), req.orderID, req.reason)
		if err != nil {
			return nil, unitofwork.Reject(req.eventID, err)
		}
		tombstones[i] = t
	}
	stored, err := s.Insert(ctx, tombstones)
	if err != nil {
		return nil, err
	}
	var charged []reversal
	for i, t := range tombstones {
		if stored[t.ID()] {
			r.log.DebugContext(ctx, "order cancelled before its charge: nothing will be charged",
				"order_id", t.OrderID(), "event_id", reqs[i].eventID)
			continue
		}
		charged = append(charged, reqs[i])
	}
	return r.reverse(ctx, s, charged)
}

// reversal asks for an order's payment to be reversed, for a reason.
type reversal struct {
	eventID, orderID, reason string
}

func reasons[T unitofwork.Message](evs []unitofwork.Event[T], reason func(T) string) []reversal {
	out := make([]reversal, len(evs))
	for i, ev := range evs {
		out[i] = reversal{eventID: ev.ID, orderID: ev.OrderID, reason: reason(ev.Msg)}
	}
	return out
}

// reverse reverses the approved payments of the orders and announces each reversal. An order
// without a payment, or whose payment was declined or is reversed already, needs nothing.
func (r *rules) reverse(ctx context.Context, s Store, reqs []reversal) ([]outbox.Event, error) {
	orders := make([]string, len(reqs))
	for i, req := range reqs {
		orders[i] = req.orderID
	}
	payments, err := s.Lock(ctx, orders)
	if err != nil {
		return nil, err
	}
	var changed []*payment.Payment
	var out []outbox.Event
	for _, req := range reqs {
		log := r.log.With("order_id", req.orderID, "event_id", req.eventID)
		p := payments[req.orderID]
		if p == nil {
			log.WarnContext(ctx, "no payment to reverse")
			continue
		}
		reversed, err := p.Reverse(req.reason)
		if errors.Is(err, payment.ErrNotReversible) {
			log.DebugContext(ctx, "payment not approved, nothing to reverse", "status", p.Status())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reverse payment %s: %w", p.ID(), err)
		}
		if !reversed {
			continue
		}
		log.DebugContext(ctx, "payment reversed", "payment_id", p.ID(), "amount_minor", p.AmountMinor(), "reason", p.Reason())
		changed = append(changed, p)
		id := newID()
		out = append(out, outbox.Event{ID: id, OrderID: p.OrderID(), RoutingKey: catalog.PaymentReversed, Payload: &paymentv1.PaymentReversed{
			EventId:     id,
			OrderId:     p.OrderID(),
			OccurTime:   timestamppb.Now(),
			PaymentId:   p.ID(),
			AmountMinor: p.AmountMinor(),
			Reason:      p.Reason(),
		}})
	}
	if err := s.Save(ctx, changed); err != nil {
		return nil, err
	}
	return out, nil
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
