// Package memory is shipping-service's rules over an in-memory store, for tests of the saga that
// need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Service is shipping-service in memory: its real rule and carrier, its shipments in a table.
type Service struct {
	*rules.Memory[eventhandler.Store]                                  // Deliver
	shipments                         *rules.Table[*shipping.Shipment] // by order id
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
	s := &Service{shipments: rules.NewTable(clone)}
	s.Memory, err = rules.NewMemory(catalog.Shipping, func(reg *rules.Registry[eventhandler.Store]) {
		eventhandler.Register(reg, carrier, slog.New(slog.DiscardHandler))
	}, s.Begin)
	if err != nil {
		return nil, err
	}
	return s, nil
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

// Begin starts a unit of work: the store the rules see, and its end, which makes what was
// written through the store take effect when commit is true and drops it otherwise. The runner
// uses it, and so do the store's contract tests (internal/storetest).
func (s *Service) Begin() (eventhandler.Store, func(commit bool)) {
	return rules.BeginRecords(s.shipments, (*shipping.Shipment).OrderID)
}

func clone(sh *shipping.Shipment) *shipping.Shipment {
	return shipping.Load(shipping.Snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(),
		CountryCode: sh.CountryCode(), Reason: sh.Reason(), Status: sh.Status(), FreightMinor: sh.FreightMinor(),
		EstimatedDelivery: sh.EstimatedDelivery(), CreatedAt: sh.CreatedAt()})
}
