// Package memory is order-service's rules over an in-memory store, for tests of the saga that
// need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/outgoing"
)

// Service is order-service in memory: the order domain and its real saga rules, its orders in
// a table.
type Service struct {
	*rules.Memory[eventhandler.Store]                            // Deliver
	orders                            *rules.Table[*order.Order] // by id
}

// New returns order-service with no orders.
func New() (*Service, error) {
	s := &Service{orders: rules.NewTable(clone)}
	var err error
	s.Memory, err = rules.NewMemory(catalog.Order, func(reg *rules.Registry[eventhandler.Store]) {
		eventhandler.Register(reg, slog.New(slog.DiscardHandler))
	}, s.Begin)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Request is what a client sends to CreateOrder.
type Request struct {
	CustomerID    string
	PaymentMethod string
	Items         []Item
	CountryCode   string // "" without a shipping address
}

// Item is one line of a Request.
type Item struct {
	ProductID string
	Quantity  int32
	UnitPrice string // decimal, in major units: "49.90"
}

// Place validates and stores a new PENDING order, as CreateOrder does, and returns its id and
// the order.created event it publishes.
func (s *Service) Place(r Request) (string, outbox.Event, error) {
	p := order.Params{CustomerID: r.CustomerID, PaymentMethod: r.PaymentMethod, Items: make([]order.Item, len(r.Items))}
	for i, it := range r.Items {
		price, err := order.ParseMoney(fmt.Sprintf("items[%d].unit_price", i), it.UnitPrice)
		if err != nil {
			return "", outbox.Event{}, err
		}
		p.Items[i] = order.Item{ProductID: it.ProductID, Quantity: it.Quantity, UnitPrice: price}
	}
	if r.CountryCode != "" {
		p.ShippingAddress = &order.Address{CountryCode: r.CountryCode}
	}
	o, err := order.New(p, time.Now())
	if err != nil {
		return "", outbox.Event{}, err
	}
	s.orders.Put(o.ID(), o)
	return o.ID(), outgoing.Created(o), nil
}

// Order is an order's saga state as GetOrder shows it.
type Order struct {
	Status        string // the fixed names of DESIGN.md: PENDING, …, CONFIRMED
	FailureReason string
	TrackingCode  string
	TotalMinor    int64
	History       []string // statuses, oldest first
}

// Order returns an order, if it exists.
func (s *Service) Order(id string) (Order, bool) {
	o, ok := s.orders.Get(id)
	if !ok {
		return Order{}, false
	}
	v := Order{Status: string(o.Status()), FailureReason: o.FailureReason(), TrackingCode: o.TrackingCode(), TotalMinor: int64(o.Total())}
	for _, h := range o.History() {
		v.History = append(v.History, string(h.Status))
	}
	return v, true
}

// Begin starts a unit of work: the store the rules see, and its end, which makes what was
// written through the store take effect when commit is true and drops it otherwise. The runner
// uses it, and so do the store's contract tests (internal/storetest).
func (s *Service) Begin() (eventhandler.Store, func(commit bool)) {
	tx := &tx{orders: s.orders.Begin()}
	return tx, tx.orders.End
}

// tx is the store of one unit of work.
type tx struct {
	orders *rules.TableTx[*order.Order]
}

func (t *tx) Order(_ context.Context, id string) (*order.Order, error) {
	o, _ := t.orders.Get(id)
	return o, nil
}

func (t *tx) Record(o *order.Order, _ order.Change) { t.orders.Put(o.ID(), o) }

func clone(o *order.Order) *order.Order {
	return order.Restore(order.Snapshot{
		ID:              o.ID(),
		CustomerID:      o.CustomerID(),
		PaymentMethod:   o.PaymentMethod(),
		Status:          o.Status(),
		Items:           slices.Clone(o.Items()),
		Total:           o.Total(),
		ShippingAddress: o.ShippingAddress(),
		FailureReason:   o.FailureReason(),
		TrackingCode:    o.TrackingCode(),
		RequestID:       o.RequestID(),
		CreatedAt:       o.CreatedAt(),
		UpdatedAt:       o.UpdatedAt(),
		History:         slices.Clone(o.History()),
		Version:         o.Version(),
	})
}
