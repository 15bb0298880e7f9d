// Package eventhandler holds payment-service's rules for the events it consumes: charge each new
// order once, reverse the payment when the saga compensates, and, when order-service cancels
// an order at its deadline, reverse it or make sure it never happens. The unit of work around them
// (decoding, inbox, outbox, transaction, batching) is the runner's.
package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

// Store is what the rules need from storage, within the event's unit of work: the payments
// of orders, one at most per order, the event's read ahead and locked by then.
type Store = rules.Records[*payment.Payment]

// Register adds payment-service's rules to reg.
func Register(reg *rules.Registry[Store], gateway *payment.Gateway, log *slog.Logger) {
	r := &paymentRules{gateway: gateway, log: log}
	rules.On(reg, catalog.OrderCreated, validateOrderCreated, r.charge)
	rules.On(reg, catalog.InventoryFailed, nil, func(ctx context.Context, s Store, ev rules.Event[*inventoryv1.InventoryFailed]) ([]outbox.Event, error) {
		return r.reverse(ctx, s, ev.ID, ev.OrderID, "inventory failed: "+ev.Msg.GetReason())
	})
	rules.On(reg, catalog.InventoryReleased, nil, func(ctx context.Context, s Store, ev rules.Event[*inventoryv1.InventoryReleased]) ([]outbox.Event, error) {
		return r.reverse(ctx, s, ev.ID, ev.OrderID, "inventory released: "+ev.Msg.GetReason())
	})
	rules.On(reg, catalog.OrderCancelled, nil, r.cancel)
}

type paymentRules struct {
	gateway *payment.Gateway
	log     *slog.Logger
}

// charge charges a new order once and announces the outcome: payment.approved with what
// inventory and shipping need, or payment.failed with the reason. An order that has a payment
// already (or was cancelled first) keeps it, and nothing is announced again.
func (r *paymentRules) charge(ctx context.Context, s Store, ev rules.Event[*orderv1.OrderCreated]) ([]outbox.Event, error) {
	p, added, err := rules.AddFirst(ctx, s, ev.OrderID, func() (*payment.Payment, error) {
		return payment.Charge(r.gateway, newID(), ev.OrderID, ev.Msg.GetPaymentMethod(), ev.Msg.GetTotalMinor())
	})
	if err != nil || !added {
		return nil, err
	}
	r.log.DebugContext(ctx, "payment decided", "order_id", p.OrderID(), "event_id", ev.ID, "payment_id", p.ID(),
		"status", p.Status(), "reason", p.Reason(), "amount_minor", p.AmountMinor())
	return []outbox.Event{announceCharge(ev.Msg, p)}, nil
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
	if p.Approved() {
		return outbox.New(catalog.PaymentApproved, &paymentv1.PaymentApproved{
			OrderId:     p.OrderID(),
			PaymentId:   p.ID(),
			AmountMinor: p.AmountMinor(),
			Items:       ev.GetItems(),
			CountryCode: ev.GetCountryCode(),
		})
	}
	return outbox.New(catalog.PaymentFailed, &paymentv1.PaymentFailed{
		OrderId:   p.OrderID(),
		PaymentId: p.ID(),
		Reason:    p.Reason(),
	})
}

// cancel settles the payment of a cancelled order: an order without a payment gets a CANCELLED
// one, which takes its place for good, so that an order.created arriving later charges nothing;
// an approved payment is reversed and payment.reversed announced; any other stays as it is.
func (r *paymentRules) cancel(ctx context.Context, s Store, ev rules.Event[*orderv1.OrderCancelled]) ([]outbox.Event, error) {
	reason := "order cancelled: " + ev.Msg.GetReason()
	_, added, err := rules.AddFirst(ctx, s, ev.OrderID, func() (*payment.Payment, error) {
		return payment.Tombstone(newID(), ev.OrderID, reason)
	})
	if err != nil {
		return nil, err
	}
	if !added {
		return r.reverse(ctx, s, ev.ID, ev.OrderID, reason)
	}
	r.log.DebugContext(ctx, "order cancelled before its charge: nothing will be charged", "order_id", ev.OrderID, "event_id", ev.ID)
	return nil, nil
}

// reverse reverses the approved payment of an order and announces the reversal. An order
// without a payment, or whose payment was declined or is reversed already, needs nothing.
func (r *paymentRules) reverse(ctx context.Context, s Store, eventID, orderID, reason string) ([]outbox.Event, error) {
	log := r.log.With("order_id", orderID, "event_id", eventID)
	p, err := s.Get(ctx, orderID)
	if err != nil {
		return nil, err
	}
	if p == nil {
		log.WarnContext(ctx, "no payment to reverse")
		return nil, nil
	}
	reversed, err := p.Reverse(reason)
	if errors.Is(err, payment.ErrNotReversible) {
		log.DebugContext(ctx, "payment not approved, nothing to reverse", "status", p.Status())
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reverse payment %s: %w", p.ID(), err)
	}
	if !reversed {
		return nil, nil
	}
	s.Save(p)
	log.DebugContext(ctx, "payment reversed", "payment_id", p.ID(), "amount_minor", p.AmountMinor(), "reason", p.Reason())
	return []outbox.Event{outbox.New(catalog.PaymentReversed, &paymentv1.PaymentReversed{
		OrderId:     p.OrderID(),
		PaymentId:   p.ID(),
		AmountMinor: p.AmountMinor(),
		Reason:      p.Reason(),
	})}, nil
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
