// Package memory is inventory-service's rules over an in-memory store, for tests of the saga
// that need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"log/slog"
	"slices"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Service is inventory-service in memory: its real rules, its products and reservations in
// tables.
type Service struct {
	*rules.Memory[eventhandler.Store]                                      // Deliver
	products                          *rules.Table[*inventory.Product]     // by id
	reservations                      *rules.Table[*inventory.Reservation] // by order id: at most one per order
}

// New returns inventory-service with no products.
func New() (*Service, error) {
	s := &Service{products: rules.NewTable(cloneProduct), reservations: rules.NewTable(cloneReservation)}
	var err error
	s.Memory, err = rules.NewMemory(catalog.Inventory, func(reg *rules.Registry[eventhandler.Store]) {
		eventhandler.Register(reg, slog.New(slog.DiscardHandler))
	}, s.Begin)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SetStock sets a product's total stock, creating the product, as the admin API does; tests
// call it between deliveries, as the store's contract says (storetest.SetStock).
func (s *Service) SetStock(productID string, total int64) error {
	p, ok := s.products.Get(productID)
	var err error
	if ok {
		err = p.SetTotal(total)
	} else {
		p, err = inventory.New(productID, "", total)
	}
	if err != nil {
		return err
	}
	s.products.Put(p.ID(), p)
	return nil
}

// Stock is a product's stock as stored.
type Stock struct {
	Total, Reserved int64
}

// Stock returns a product's stock, if the product exists.
func (s *Service) Stock(productID string) (Stock, bool) {
	p, ok := s.products.Get(productID)
	if !ok {
		return Stock{}, false
	}
	return Stock{Total: p.Total(), Reserved: p.Reserved()}, true
}

// Reservation is an order's reservation as stored.
type Reservation struct {
	Units     int64 // item units held or, once released, given back
	Released  bool
	Cancelled bool // the tombstone of an order cancelled before anything was reserved
}

// Reservation returns the reservation of an order, if it has one.
func (s *Service) Reservation(orderID string) (Reservation, bool) {
	r, ok := s.reservations.Get(orderID)
	if !ok {
		return Reservation{}, false
	}
	var units int64
	for _, it := range r.Items {
		units += it.Quantity
	}
	return Reservation{Units: units, Released: r.Status == inventory.Released, Cancelled: r.Status == inventory.Cancelled}, true
}

// Begin starts a unit of work: the store the rules see, and its end, which makes what was
// written through the store take effect when commit is true and drops it otherwise. The runner
// uses it, and so do the store's contract tests (internal/storetest).
func (s *Service) Begin() (eventhandler.Store, func(commit bool)) {
	tx := &tx{products: s.products.Begin(), read: map[string]*inventory.Product{}, reservations: s.reservations.Begin()}
	return tx, func(commit bool) {
		tx.products.End(commit)
		tx.reservations.End(commit)
	}
}

// tx is the store of one unit of work: it reads copies of what is stored and keeps its writes
// until commit.
type tx struct {
	products     *rules.TableTx[*inventory.Product]
	read         map[string]*inventory.Product // by id: every call of the unit of work gets the same product
	reservations *rules.TableTx[*inventory.Reservation]
}

func (t *tx) Reservation(_ context.Context, orderID string) (*inventory.Reservation, error) {
	r, _ := t.reservations.Get(orderID)
	return r, nil
}

func (t *tx) Products(_ context.Context, ids []string) (map[string]*inventory.Product, error) {
	out := map[string]*inventory.Product{}
	for _, id := range ids {
		p, ok := t.read[id]
		if !ok {
			if p, ok = t.products.Get(id); ok {
				t.read[id] = p
			}
		}
		if ok {
			out[id] = p
		}
	}
	return out, nil
}

func (t *tx) AddReservation(r *inventory.Reservation)  { t.reservations.Put(r.OrderID, r) }
func (t *tx) SaveReservation(r *inventory.Reservation) { t.reservations.Put(r.OrderID, r) }

func (t *tx) SaveStock(products map[string]*inventory.Product) {
	for id, p := range products {
		t.products.Put(id, p)
	}
}

func cloneProduct(p *inventory.Product) *inventory.Product {
	return inventory.Load(p.ID(), p.Name(), p.Total(), p.Reserved())
}

func cloneReservation(r *inventory.Reservation) *inventory.Reservation {
	c := *r
	c.Items = slices.Clone(r.Items)
	return &c
}
