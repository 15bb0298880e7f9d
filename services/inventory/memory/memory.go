// Package memory is inventory-service's rules over an in-memory store, for tests of the saga
// that need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Service is inventory-service in memory: its real rules, its products and reservations in maps.
type Service struct {
	*rules.Memory[eventhandler.Store] // Deliver

	mu           sync.Mutex
	products     map[string]*inventory.Product    // by id
	reservations map[string]inventory.Reservation // by order id: at most one per order
}

// New returns inventory-service with no products.
func New() (*Service, error) {
	s := &Service{products: map[string]*inventory.Product{}, reservations: map[string]inventory.Reservation{}}
	var err error
	s.Memory, err = rules.NewMemory(catalog.Inventory, func(reg *rules.Registry[eventhandler.Store]) {
		eventhandler.Register(reg, slog.New(slog.DiscardHandler))
	}, s.Begin)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SetStock sets a product's total stock, creating the product, as the admin API does.
func (s *Service) SetStock(productID string, total int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.products[productID]; ok {
		return p.SetTotal(total)
	}
	p, err := inventory.New(productID, "", total)
	if err != nil {
		return err
	}
	s.products[p.ID()] = p
	return nil
}

// Stock is a product's stock as stored.
type Stock struct {
	Total, Reserved int64
}

// Stock returns a product's stock, if the product exists.
func (s *Service) Stock(productID string) (Stock, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.products[productID]
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
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reservations[orderID]
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
// written through the store take effect when commit is true and drops it otherwise. Units of
// work run one at a time: Begin waits for the one under way to end. The runner uses it, and so
// do the store's contract tests (internal/storetest).
func (s *Service) Begin() (eventhandler.Store, func(commit bool)) {
	s.mu.Lock()
	tx := &tx{s: s, products: map[string]*inventory.Product{}, reservations: map[string]*inventory.Reservation{}}
	return tx, func(commit bool) {
		if commit {
			for id, p := range tx.products {
				s.products[id] = clone(p)
			}
			for id, r := range tx.reservations {
				r := *r
				r.Items = slices.Clone(r.Items)
				s.reservations[id] = r
			}
		}
		s.mu.Unlock()
	}
}

// tx is the store of one unit of work: it reads copies of what is stored and keeps its writes
// until commit.
type tx struct {
	s            *Service
	products     map[string]*inventory.Product     // read or written, by id
	reservations map[string]*inventory.Reservation // written, by order id
}

func (t *tx) Reservation(_ context.Context, orderID string) (*inventory.Reservation, error) {
	if r, ok := t.reservations[orderID]; ok {
		return r, nil
	}
	r, ok := t.s.reservations[orderID]
	if !ok {
		return nil, nil
	}
	r.Items = slices.Clone(r.Items)
	return &r, nil
}

func (t *tx) Products(_ context.Context, ids []string) (map[string]*inventory.Product, error) {
	out := map[string]*inventory.Product{}
	for _, id := range ids {
		p, ok := t.products[id]
		if !ok {
			if p, ok = t.s.products[id]; ok {
				p = clone(p)
				t.products[id] = p
			}
		}
		if ok {
			out[id] = p
		}
	}
	return out, nil
}

func (t *tx) AddReservation(r *inventory.Reservation)          { t.reservations[r.OrderID] = r }
func (t *tx) SaveReservation(r *inventory.Reservation)         { t.reservations[r.OrderID] = r }
func (t *tx) SaveStock(products map[string]*inventory.Product) { maps.Copy(t.products, products) }

func clone(p *inventory.Product) *inventory.Product {
	return inventory.Load(p.ID(), p.Name(), p.Total(), p.Reserved())
}
