// Package memory is payment-service's rules over an in-memory store, for tests of the saga that
// need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"log/slog"
	"math/rand/v2"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

// Service is payment-service in memory: its real rules and gateway, its payments in a table.
type Service struct {
	*rules.Memory[eventhandler.Store]                                // Deliver
	payments                          *rules.Table[*payment.Payment] // by order id
}

// New returns payment-service with the gateway's settings (PAYMENT_AMOUNT_LIMIT in minor units,
// PAYMENT_DECLINE_RATE); a random decline rate draws from a fixed seed.
func New(limitMinor int64, declineRate float64) (*Service, error) {
	random := rand.New(rand.NewPCG(1, 2)).Float64 // only called by one unit of work at a time
	gateway, err := payment.NewGateway(limitMinor, declineRate, random)
	if err != nil {
		return nil, err
	}
	s := &Service{payments: rules.NewTable(clone)}
	s.Memory, err = rules.NewMemory(catalog.Payment, func(reg *rules.Registry[eventhandler.Store]) {
		eventhandler.Register(reg, gateway, slog.New(slog.DiscardHandler))
	}, s.Begin)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Payment is an order's payment as stored.
type Payment struct {
	Status      string // APPROVED, DECLINED, REVERSED or CANCELLED
	AmountMinor int64
	Reason      string
}

// Payment returns the payment of an order, if it has one.
func (s *Service) Payment(orderID string) (Payment, bool) {
	p, ok := s.payments.Get(orderID)
	if !ok {
		return Payment{}, false
	}
	return Payment{Status: string(p.Status()), AmountMinor: p.AmountMinor(), Reason: p.Reason()}, true
}

// Begin starts a unit of work: the store the rules see, and its end, which makes what was
// written through the store take effect when commit is true and drops it otherwise. The runner
// uses it, and so do the store's contract tests (internal/storetest).
func (s *Service) Begin() (eventhandler.Store, func(commit bool)) {
	return rules.BeginRecords(s.payments, (*payment.Payment).OrderID)
}

func clone(p *payment.Payment) *payment.Payment {
	return payment.Load(p.ID(), p.OrderID(), p.Method(), p.AmountMinor(), p.Status(), p.Reason())
}
