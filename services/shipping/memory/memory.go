// Package memory is shipping-service's rules over an in-memory store, for tests of the saga that
// need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Service is shipping-service in memory: its real rule and carrier, its shipments in a table.
type Service struct {
	work      *unitofwork.Memory[eventhandler.Store]
	shipments *unitofwork.Table[*shipping.Shipment] // by order id
}

// New returns shipping-service with the carrier's settings (SHIPPING_BASE_FREIGHT in minor units,
// SHIPPING_FAILURE_RATE). The carrier's clock stands still
// and its randomness comes from a fixed seed, so tracking codes and estimates repeat run to run.
func New(baseFreightMinor int64, failureRate float64) (*Service, error) {
	// Only drawn from by one unit of work at a time.
	carrier, err := shipping.NewCarrier(baseFreightMinor, failureRate, shipping.Env{
		Now:     func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
		Random:  rand.New(rand.NewPCG(1, 2)).Float64,
		Entropy: rand.NewChaCha8([32]byte{}),
	})
	if err != nil {
		return nil, err
	}
	s := &Service{shipments: unitofwork.NewTable(clone)}
	log := slog.New(slog.DiscardHandler)
	svc := unitofwork.New[eventhandler.Store](catalog.Shipping, nil, nil, log, nil)
	eventhandler.Register(svc, carrier, log)
	s.work, err = unitofwork.NewMemory(svc, func() (eventhandler.Store, func(bool)) {
		tx := &tx{shipments: s.shipments.Begin()}
		return tx, func(commit bool) {
			if commit {
				tx.shipments.Commit()
			}
		}
	})
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
	sh, ok := s.shipments.Get(orderID)
	if !ok {
		return Shipment{}, false
	}
	return Shipment{Status: string(sh.Status()), TrackingCode: sh.TrackingCode(), FreightMinor: sh.FreightMinor(), Reason: sh.Reason()}, true
}

// tx is the store of one unit of work.
type tx struct {
	shipments *unitofwork.TableTx[*shipping.Shipment]
}

func (t *tx) Insert(_ context.Context, shipments []*shipping.Shipment) (map[string]bool, error) {
	stored := map[string]bool{}
	for _, sh := range shipments {
		if _, ok := t.shipments.Get(sh.OrderID()); ok {
			continue
		}
		t.shipments.Put(sh.OrderID(), sh)
		stored[sh.ID()] = true
	}
	return stored, nil
}

func (t *tx) Lock(_ context.Context, orderIDs []string) (map[string]*shipping.Shipment, error) {
	out := map[string]*shipping.Shipment{}
	for _, id := range orderIDs {
		if sh, ok := t.shipments.Get(id); ok {
			out[id] = sh
		}
	}
	return out, nil
}

func (t *tx) Save(_ context.Context, shipments []*shipping.Shipment) error {
	for _, sh := range shipments {
		t.shipments.Put(sh.OrderID(), sh)
	}
	return nil
}

func clone(sh *shipping.Shipment) *shipping.Shipment {
	return shipping.Load(shipping.Snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(),
		CountryCode: sh.CountryCode(), Reason: sh.Reason(), Status: sh.Status(), FreightMinor: sh.FreightMinor(),
		EstimatedDelivery: sh.EstimatedDelivery(), CreatedAt: sh.CreatedAt()})
}
