package unitofwork

import (
	"context"
	"fmt"
	"sync"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
)

// Memory runs a service's rules over an in-memory store, one delivery at a time, to test the
// saga without PostgreSQL or RabbitMQ. Each delivery is a unit of work as it is on the database:
// decoded and validated, claimed in its queue's inbox so that an event id takes effect once per
// queue, and applied by the rule through a store whose writes take effect only when the rule
// succeeds. A rejected or failed delivery leaves no trace, its claim included.
type Memory[S any] struct {
	svc   *Service[S]
	begin func() (store S, end func(commit bool))

	mu    sync.Mutex
	inbox map[claim]bool
}

// claim is an event id taken by a queue, as inbox.Claim keys it.
type claim struct{ queue, eventID string }

// NewMemory returns the units of work of svc in memory. begin starts one: it returns a store
// and the end of the unit of work, which makes what was written through the store take effect
// when commit is true and drops it otherwise. It fails, as Handlers does, when svc's rules do
// not match the service's subscriptions in the catalog.
func NewMemory[S any](svc *Service[S], begin func() (store S, end func(commit bool))) (*Memory[S], error) {
	if _, err := svc.Handlers(); err != nil {
		return nil, err
	}
	return &Memory[S]{svc: svc, begin: begin, inbox: map[claim]bool{}}, nil
}

// Deliver applies one delivery of routingKey carrying body, as the service's queue for it
// would, and returns the events to publish: none for an event the queue took already. An error
// failure.IsPermanent reports is one the broker would dead-letter. Deliveries are applied one
// at a time, whatever the goroutine.
func (m *Memory[S]) Deliver(ctx context.Context, routingKey string, body []byte) ([]outbox.Event, error) {
	e, ok := m.svc.rules[routingKey]
	if !ok {
		return nil, fmt.Errorf("%s has no rule for %s", m.svc.name, routingKey)
	}
	// Decoded first: the inbox is keyed by the canonical event id.
	env, err := e.decode(body)
	if err != nil {
		return nil, failure.Permanent(err)
	}
	c := claim{queue: catalog.Subscription{Consumer: m.svc.name, RoutingKey: routingKey}.Queue(), eventID: env.id}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inbox[c] {
		return nil, nil
	}
	store, end := m.begin()
	out, err := applyOne(ctx, store, e, env)
	end(err == nil)
	if err != nil {
		return nil, err
	}
	m.inbox[c] = true
	return out, nil
}
