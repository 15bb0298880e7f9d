// Package eventhandler turns the events payment-service consumes into payments: it decodes and
// validates each batch, lets the gateway decide, and hands the batch to the repository, which
// applies it in one transaction.
package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

// Service is the consumer name of payment-service in the event catalog.
const Service = "payment"

// Handler handles payment-service's events.
type Handler struct {
	repo    *postgres.Repository
	gateway *payment.Gateway
	log     *slog.Logger
}

// New returns the handler.
func New(repo *postgres.Repository, gateway *payment.Gateway, log *slog.Logger) *Handler {
	return &Handler{repo: repo, gateway: gateway, log: log}
}

// ByRoutingKey returns the broker handler of each event payment-service consumes.
func (h *Handler) ByRoutingKey() map[string]broker.Handler {
	return map[string]broker.Handler{
		broker.OrderCreated:      h.OrderCreated,
		broker.InventoryFailed:   h.InventoryFailed,
		broker.InventoryReleased: h.InventoryReleased,
	}
}

func queue(routingKey string) string {
	return broker.Subscription{Consumer: Service, RoutingKey: routingKey}.Queue()
}

// OrderCreated charges each new order once and announces the outcome: payment.approved with
// what inventory and shipping need, or payment.failed with the reason.
func (h *Handler) OrderCreated(ctx context.Context, batch []amqp.Delivery) error {
	news := make([]postgres.NewPayment, 0, len(batch))
	for _, d := range batch {
		var ev orderv1.OrderCreated
		if err := broker.Decode(d, &ev); err != nil {
			return err
		}
		if err := validateOrderCreated(&ev); err != nil {
			return err
		}
		p, err := payment.Charge(h.gateway, newID(), ev.GetOrderId(), ev.GetPaymentMethod(), ev.GetTotalMinor())
		if err != nil {
			return broker.Permanent(err)
		}
		news = append(news, postgres.NewPayment{EventID: ev.GetEventId(), Payment: p, Announce: announceCharge(&ev, p)})
	}
	stored, err := h.repo.Create(ctx, queue(broker.OrderCreated), news)
	if err != nil {
		return err
	}
	for _, np := range stored {
		p := np.Payment
		h.log.InfoContext(ctx, "payment decided", "order_id", p.OrderID(), "event_id", np.EventID, "payment_id", p.ID(),
			"status", p.Status(), "reason", p.Reason(), "amount_minor", p.AmountMinor())
	}
	return nil
}

// validateOrderCreated rejects an order.created that payment cannot act on or that would break
// the services downstream, which receive its items through payment.approved.
func validateOrderCreated(ev *orderv1.OrderCreated) error {
	if ev.GetPaymentMethod() == "" {
		return broker.Invalid("order.created %s: no payment_method", ev.GetEventId())
	}
	if ev.GetTotalMinor() < 0 {
		return broker.Invalid("order.created %s: negative total_minor %d", ev.GetEventId(), ev.GetTotalMinor())
	}
	if len(ev.GetItems()) == 0 {
		return broker.Invalid("order.created %s: no items", ev.GetEventId())
	}
	for i, it := range ev.GetItems() {
		if err := uuid.Validate(it.GetProductId()); err != nil {
			return broker.Invalid("order.created %s: items[%d].product_id: %v", ev.GetEventId(), i, err)
		}
		if it.GetQuantity() <= 0 {
			return broker.Invalid("order.created %s: items[%d].quantity %d not positive", ev.GetEventId(), i, it.GetQuantity())
		}
		if it.GetUnitPriceMinor() < 0 {
			return broker.Invalid("order.created %s: items[%d].unit_price_minor negative", ev.GetEventId(), i)
		}
	}
	return nil
}

func announceCharge(ev *orderv1.OrderCreated, p *payment.Payment) outbox.Event {
	id := newID()
	if p.Approved() {
		return outbox.Event{ID: id, OrderID: p.OrderID(), RoutingKey: broker.PaymentApproved, Payload: &paymentv1.PaymentApproved{
			EventId:     id,
			OrderId:     p.OrderID(),
			OccurTime:   timestamppb.Now(),
			PaymentId:   p.ID(),
			AmountMinor: p.AmountMinor(),
			Items:       ev.GetItems(),
			CountryCode: ev.GetCountryCode(),
		}}
	}
	return outbox.Event{ID: id, OrderID: p.OrderID(), RoutingKey: broker.PaymentFailed, Payload: &paymentv1.PaymentFailed{
		EventId:   id,
		OrderId:   p.OrderID(),
		OccurTime: timestamppb.Now(),
		PaymentId: p.ID(),
		Reason:    p.Reason(),
	}}
}

// InventoryFailed reverses the payment of an order whose stock could not be reserved.
func (h *Handler) InventoryFailed(ctx context.Context, batch []amqp.Delivery) error {
	return h.reverse(ctx, broker.InventoryFailed, batch, func(d amqp.Delivery) (string, string, string, error) {
		var ev inventoryv1.InventoryFailed
		err := broker.Decode(d, &ev)
		return ev.GetEventId(), ev.GetOrderId(), "inventory failed: " + ev.GetReason(), err
	})
}

// InventoryReleased reverses the payment of an order whose reserved stock was given back
// because it could not be shipped.
func (h *Handler) InventoryReleased(ctx context.Context, batch []amqp.Delivery) error {
	return h.reverse(ctx, broker.InventoryReleased, batch, func(d amqp.Delivery) (string, string, string, error) {
		var ev inventoryv1.InventoryReleased
		err := broker.Decode(d, &ev)
		return ev.GetEventId(), ev.GetOrderId(), "inventory released: " + ev.GetReason(), err
	})
}

// reverse reverses the approved payments of the batch's orders and announces each reversal.
// An order without a payment, or whose payment was declined or is reversed already, needs
// nothing: the event is consumed without effect.
func (h *Handler) reverse(ctx context.Context, routingKey string, batch []amqp.Delivery,
	decode func(amqp.Delivery) (eventID, orderID, reason string, err error)) error {
	events := make([]postgres.OrderEvent, 0, len(batch))
	reasons := make(map[string]string, len(batch))
	for _, d := range batch {
		eventID, orderID, reason, err := decode(d)
		if err != nil {
			return err
		}
		events = append(events, postgres.OrderEvent{EventID: eventID, OrderID: orderID})
		reasons[eventID] = reason
	}
	return h.repo.Update(ctx, queue(routingKey), events, func(ev postgres.OrderEvent, p *payment.Payment) ([]outbox.Event, error) {
		log := h.log.With("order_id", ev.OrderID, "event_id", ev.EventID)
		if p == nil {
			log.WarnContext(ctx, "no payment to reverse", "event", routingKey)
			return nil, nil
		}
		reversed, err := p.Reverse(reasons[ev.EventID])
		if errors.Is(err, payment.ErrNotReversible) {
			log.InfoContext(ctx, "payment not approved, nothing to reverse", "status", p.Status())
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reverse payment %s: %w", p.ID(), err)
		}
		if !reversed {
			return nil, nil
		}
		log.InfoContext(ctx, "payment reversed", "payment_id", p.ID(), "amount_minor", p.AmountMinor(), "reason", p.Reason())
		id := newID()
		return []outbox.Event{{ID: id, OrderID: p.OrderID(), RoutingKey: broker.PaymentReversed, Payload: &paymentv1.PaymentReversed{
			EventId:     id,
			OrderId:     p.OrderID(),
			OccurTime:   timestamppb.Now(),
			PaymentId:   p.ID(),
			AmountMinor: p.AmountMinor(),
			Reason:      p.Reason(),
		}}}, nil
	})
}

// newID returns a time-ordered UUID, which keeps index inserts local.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}
