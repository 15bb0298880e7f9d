// Package memory is payment-service's rules over an in-memory store, for tests of the saga that
// need neither PostgreSQL nor RabbitMQ.
package memory

import (
	"context"
	"log/slog"
	"math/rand/v2"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

// Service is payment-service in memory: its real rules and gateway, its payments in a table.
type Service struct {
	work     *unitofwork.Memory[eventhandler.Store]
	payments *unitofwork.Table[*payment.Payment] // by order id
}

// New returns payment-service with the gateway's settings (PAYMENT_AMOUNT_LIMIT in minor units,
// PAYMENT_DECLINE_RATE); a random decline rate draws from a fixed seed.
func New(limitMinor int64, declineRate float64) (*Service, error) {
	random := rand.New(rand.NewPCG(1, 2)).Float64 // only called by one unit of work at a time
	gateway, err := payment.NewGateway(limitMinor, declineRate, random)
	if err != nil {
		return nil, err
	}
	s := &Service{payments: unitofwork.NewTable(clone)}
	log := slog.New(slog.DiscardHandler)
	svc := unitofwork.New[eventhandler.Store](catalog.Payment, nil, nil, log, nil)
	eventhandler.Register(svc, gateway, log)
	s.work, err = unitofwork.NewMemory(svc, func() (eventhandler.Store, func(bool)) {
		tx := &tx{payments: s.payments.Begin()}
		return tx, func(commit bool) {
			if commit {
				tx.payments.Commit()
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Deliver applies one delivery of routingKey to payment-service and returns what it publishes.
func (s *Service) Deliver(ctx context.Context, routingKey string, body []byte) ([]outbox.Event, error) {
	return s.work.Deliver(ctx, routingKey, body)
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

// tx is the store of one unit of work.
type tx struct {
	payments *unitofwork.TableTx[*payment.Payment]
}

func (t *tx) Insert(_ context.Context, payments []*payment.Payment) (map[string]bool, error) {
	stored := map[string]bool{}
	for _, p := range payments {
		if _, ok := t.payments.Get(p.OrderID()); ok {
			continue
		}
		t.payments.Put(p.OrderID(), p)
		stored[p.ID()] = true
	}
	return stored, nil
}

func (t *tx) Lock(_ context.Context, orderIDs []string) (map[string]*payment.Payment, error) {
	out := map[string]*payment.Payment{}
	for _, id := range orderIDs {
		if p, ok := t.payments.Get(id); ok {
			out[id] = p
		}
	}
	return out, nil
}

func (t *tx) Save(_ context.Context, payments []*payment.Payment) error {
	for _, p := range payments {
		t.payments.Put(p.OrderID(), p)
	}
	return nil
}

func clone(p *payment.Payment) *payment.Payment {
	return payment.Load(p.ID(), p.OrderID(), p.Method(), p.AmountMinor(), p.Status(), p.Reason())
}
