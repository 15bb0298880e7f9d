package rules

import (
	"context"
	"fmt"
	"sync"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
)

// Memory runs a service's rules over an in-memory store, one delivery at a time, to test the
// saga without PostgreSQL or RabbitMQ. Each delivery is a unit of work as it is on the database:
// decoded and validated, claimed in its queue's inbox so that an event id takes effect once per
// queue, and applied by the rule through a store whose writes take effect only when the rule
// succeeds. A rejected or failed delivery leaves no trace, its claim included.
type Memory[S any] struct {
	reg   *Registry[S]
	begin func() (store S, end func(commit bool))

	mu    sync.Mutex
	inbox map[claim]bool
}

// claim is an event id taken by a queue, as the inbox keys it.
type claim struct{ queue, eventID string }

// NewMemory returns the units of work in memory of the consumer service name, whose rules
// register adds. begin starts one: it returns a store and the end of the unit of work, which
// makes what was written through the store take effect when commit is true and drops it
// otherwise. It fails, as Handlers does, when the rules do not match the service's
// subscriptions in the catalog.
func NewMemory[S any](name string, register func(*Registry[S]), begin func() (store S, end func(commit bool))) (*Memory[S], error) {
	reg := New[S](name)
	register(reg)
	if _, err := reg.Handlers(); err != nil {
		return nil, err
	}
	return &Memory[S]{reg: reg, begin: begin, inbox: map[claim]bool{}}, nil
}

// Deliver applies one delivery of routingKey carrying body, as the service's queue for it
// would, and returns the events to publish: none for an event the queue took already. An error
// failure.IsPermanent reports is one the broker would dead-letter. Deliveries are applied one
// at a time, whatever the goroutine.
func (m *Memory[S]) Deliver(ctx context.Context, routingKey string, body []byte) ([]outbox.Event, error) {
	h, ok := m.reg.rules[routingKey]
	if !ok {
		return nil, fmt.Errorf("%s has no rule for %s", m.reg.name, routingKey)
	}
	// Decoded first: the inbox is keyed by the canonical event id.
	ev, err := h.Decode(body)
	if err != nil {
		return nil, err
	}
	c := claim{queue: catalog.Subscription{Consumer: m.reg.name, RoutingKey: routingKey}.Queue(), eventID: ev.ID}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inbox[c] {
		return nil, nil
	}
	store, end := m.begin()
	out, err := h.Apply(ctx, store, ev)
	end(err == nil)
	if err != nil {
		return nil, err
	}
	m.inbox[c] = true
	return out, nil
}
