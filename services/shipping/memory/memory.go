// Package memory is shipping-service's rules over an in-memory store, for tests of the saga that
// need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Service is shipping-service in memory: its real rule and carrier, its shipments in a map.
type Service struct {
	work *unitofwork.Memory[eventhandler.Store]

	mu        sync.Mutex
	shipments map[string]*shipping.Shipment // by order id
}

// New returns shipping-service with cfg's carrier settings. The carrier's clock stands still
// and its randomness comes from a fixed seed, so tracking codes and estimates repeat run to run.
func New(cfg config.Shipping) (*Service, error) {
	// Only drawn from with the store locked.
	carrier, err := shipping.NewCarrier(cfg.BaseFreight.Minor(), float64(cfg.FailureRate), shipping.Env{
		Now:     func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
		Random:  rand.New(rand.NewPCG(1, 2)).Float64,
		Entropy: rand.NewChaCha8([32]byte{}),
	})
	if err != nil {
		return nil, err
	}
	s := &Service{shipments: map[string]*shipping.Shipment{}}
	log := slog.New(slog.DiscardHandler)
	svc := unitofwork.New[eventhandler.Store](catalog.Shipping, nil, nil, log, nil)
	eventhandler.Register(svc, carrier, log)
	s.work, err = unitofwork.NewMemory(svc, s.begin)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Deliver applies one delivery of routingKey to shipping-service and returns what it publishes.
func (s *Service) Deliver(ctx context.Context, routingKey string, body []byte) ([]outbox.Event, error) {
	return s.work.Deliver(ctx, routingKey, body)
}

// Shipment is an order's shipment as stored.
type Shipment struct {
	Status       string // SCHEDULED, FAILED or CANCELLED
	TrackingCode string
	FreightMinor int64
	Reason       string
}

// Shipment returns the shipment of an order, if it has one.
func (s *Service) Shipment(orderID string) (Shipment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, ok := s.shipments[orderID]
	if !ok {
		return Shipment{}, false
	}
	return Shipment{Status: string(sh.Status()), TrackingCode: sh.TrackingCode(), FreightMinor: sh.FreightMinor(), Reason: sh.Reason()}, true
}

func (s *Service) begin() (eventhandler.Store, func(bool)) {
	s.mu.Lock()
	tx := &tx{s: s, written: map[string]*shipping.Shipment{}}
	return tx, func(commit bool) {
		if commit {
			maps.Copy(s.shipments, tx.written)
		}
		s.mu.Unlock()
	}
}

// tx is the store of one unit of work: it reads what is stored and keeps its writes until
// commit. Lock hands out copies, so a shipment changes only when it is saved.
type tx struct {
	s       *Service
	written map[string]*shipping.Shipment // by order id
}

func (t *tx) Insert(_ context.Context, shipments []*shipping.Shipment) (map[string]bool, error) {
	stored := map[string]bool{}
	for _, sh := range shipments {
		_, had := t.s.shipments[sh.OrderID()]
		if _, wrote := t.written[sh.OrderID()]; had || wrote {
			continue
		}
		t.written[sh.OrderID()] = sh
		stored[sh.ID()] = true
	}
	return stored, nil
}

func (t *tx) Lock(_ context.Context, orderIDs []string) (map[string]*shipping.Shipment, error) {
	out := map[string]*shipping.Shipment{}
	for _, id := range orderIDs {
		sh, ok := t.written[id]
		if !ok {
			sh, ok = t.s.shipments[id]
		}
		if ok {
			out[id] = clone(sh)
		}
	}
	return out, nil
}

func (t *tx) Save(_ context.Context, shipments []*shipping.Shipment) error {
	for _, sh := range shipments {
		t.written[sh.OrderID()] = clone(sh)
	}
	return nil
}

func clone(sh *shipping.Shipment) *shipping.Shipment {
	return shipping.Load(shipping.Snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(),
		CountryCode: sh.CountryCode(), Reason: sh.Reason(), Status: sh.Status(), FreightMinor: sh.FreightMinor(),
		EstimatedDelivery: sh.EstimatedDelivery(), CreatedAt: sh.CreatedAt()})
}
