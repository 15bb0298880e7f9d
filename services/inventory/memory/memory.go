// Package memory is inventory-service's rules over an in-memory store, for tests of the saga
// that need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Service is inventory-service in memory: its real rules, its products and reservations in maps.
type Service struct {
	work *unitofwork.Memory[eventhandler.Store]

	mu           sync.Mutex
	products     map[string]*inventory.Product // by id
	reservations map[string]reservation        // by order id: at most one per order
}

// reservation is a stored reservation and whether it was given back, or is the tombstone of an
// order cancelled before anything was reserved.
type reservation struct {
	inventory.Reservation
	released, cancelled bool
}

// New returns inventory-service with no products.
func New() (*Service, error) {
	s := &Service{products: map[string]*inventory.Product{}, reservations: map[string]reservation{}}
	log := slog.New(slog.DiscardHandler)
	svc := unitofwork.New[eventhandler.Store](catalog.Inventory, nil, nil, log, nil)
	eventhandler.Register(svc, log)
	var err error
	s.work, err = unitofwork.NewMemory(svc, s.begin)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Deliver applies one delivery of routingKey to inventory-service and returns what it publishes.
func (s *Service) Deliver(ctx context.Context, routingKey string, body []byte) ([]outbox.Event, error) {
	return s.work.Deliver(ctx, routingKey, body)
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
	return Reservation{Units: units, Released: r.released, Cancelled: r.cancelled}, true
}

func (s *Service) begin() (eventhandler.Store, func(bool)) {
	s.mu.Lock()
	tx := &tx{s: s, products: map[string]*inventory.Product{}, reservations: map[string]reservation{}}
	return tx, func(commit bool) {
		if commit {
			maps.Copy(s.products, tx.products)
			maps.Copy(s.reservations, tx.reservations)
		}
		s.mu.Unlock()
	}
}

// tx is the store of one unit of work: it reads what is stored and keeps its writes until commit.
type tx struct {
	s            *Service
	products     map[string]*inventory.Product
	reservations map[string]reservation // by order id
}

func (t *tx) reservation(orderID string) (reservation, bool) {
	if r, ok := t.reservations[orderID]; ok {
		return r, true
	}
	r, ok := t.s.reservations[orderID]
	return r, ok
}

func (t *tx) LockProducts(_ context.Context, ids []string) (map[string]*inventory.Product, error) {
	out := map[string]*inventory.Product{}
	for _, id := range ids {
		p, ok := t.products[id]
		if !ok {
			p, ok = t.s.products[id]
		}
		if ok {
			out[id] = inventory.Load(p.ID(), p.Name(), p.Total(), p.Reserved())
		}
	}
	return out, nil
}

func (t *tx) SaveStock(_ context.Context, products []*inventory.Product) error {
	for _, p := range products {
		t.products[p.ID()] = inventory.Load(p.ID(), p.Name(), p.Total(), p.Reserved())
	}
	return nil
}

func (t *tx) ClaimReservations(_ context.Context, orderIDs []string) (map[string]string, error) {
	claimed := map[string]string{}
	for _, id := range orderIDs {
		if _, ok := t.reservation(id); ok {
			continue
		}
		r := inventory.Reservation{ID: uuid.NewString(), OrderID: id}
		t.reservations[id] = reservation{Reservation: r}
		claimed[id] = r.ID
	}
	return claimed, nil
}

func (t *tx) SaveReservations(_ context.Context, held []inventory.Reservation, unused []string) error {
	for _, r := range held {
		r.Items = slices.Clone(r.Items)
		t.reservations[r.OrderID] = reservation{Reservation: r}
	}
	for orderID, r := range t.reservations {
		if slices.Contains(unused, r.ID) {
			delete(t.reservations, orderID)
		}
	}
	return nil
}

func (t *tx) InsertTombstones(_ context.Context, orderIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, id := range orderIDs {
		if _, ok := t.reservation(id); ok {
			continue
		}
		t.reservations[id] = reservation{Reservation: inventory.Reservation{ID: uuid.NewString(), OrderID: id}, cancelled: true}
		out[id] = true
	}
	return out, nil
}

func (t *tx) LockReserved(_ context.Context, orderIDs []string) ([]inventory.Reservation, error) {
	var out []inventory.Reservation
	for _, id := range slices.Compact(slices.Sorted(slices.Values(orderIDs))) {
		if r, ok := t.reservation(id); ok && !r.released && !r.cancelled {
			res := r.Reservation
			res.Items = slices.Clone(res.Items)
			out = append(out, res)
		}
	}
	return out, nil
}

func (t *tx) MarkReleased(_ context.Context, ids []string) error {
	for _, m := range []map[string]reservation{t.s.reservations, t.reservations} {
		for orderID, r := range m {
			if slices.Contains(ids, r.ID) {
				r.released = true
				t.reservations[orderID] = r
			}
		}
	}
	return nil
}
