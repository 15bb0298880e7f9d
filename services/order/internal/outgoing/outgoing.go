// Package outgoing builds the events order-service publishes from the order domain: what a new
// order and a passed deadline tell the rest of the saga. The use cases call it; the stores only
// write what they are given, so no adapter decides what an order announces.
package outgoing

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Created is the order.created event that starts a new order's saga.
func Created(o *order.Order) outbox.Event {
	lines := make([]*orderv1.OrderLine, len(o.Items()))
	for i, it := range o.Items() {
		lines[i] = &orderv1.OrderLine{ProductId: it.ProductID, Quantity: it.Quantity, UnitPriceMinor: int64(it.UnitPrice)}
	}
	return outbox.New(catalog.OrderCreated, &orderv1.OrderCreated{
		OrderId:       o.ID(),
		OccurTime:     timestamppb.New(o.CreatedAt()),
		CustomerId:    o.CustomerID(),
		PaymentMethod: o.PaymentMethod(),
		Items:         lines,
		TotalMinor:    int64(o.Total()),
		CountryCode:   o.CountryCode(),
	})
}

// Cancelled is the order.cancelled event that tells the other services to undo what they did
// for an order its deadline cancelled: e is the deadline event, stuck the status it found.
func Cancelled(e order.Event, stuck order.Status, at time.Time) outbox.Event {
	return outbox.Event{ID: e.ID, OrderID: e.OrderID, RoutingKey: catalog.OrderCancelled, Payload: &orderv1.OrderCancelled{
		EventId:     e.ID,
		OrderId:     e.OrderID,
		OccurTime:   timestamppb.New(at),
		Reason:      e.Reason,
		StuckStatus: string(stuck),
	}}
}
