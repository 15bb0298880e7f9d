// Package rules holds a service's rules for the events it consumes, one per routing key, checked
// against the catalog: a rule takes one event and a store bound to the event's unit of work, and
// returns the events it causes. Running rules is the runners' job: pkg/unitofwork on PostgreSQL
// and RabbitMQ, and Memory here for tests of the saga without either.
package rules

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
)

// Message is what every event of the catalog is: a proto message with an event id and the id
// of its order.
type Message interface {
	proto.Message
	GetEventId() string
	GetOrderId() string
	GetOccurTime() *timestamppb.Timestamp
}

// Event is one decoded event, its ids in canonical (lower-case) form.
type Event[T Message] struct {
	ID      string
	OrderID string
	Msg     T
}

// Rule applies a service's domain rule to one event, seen for the first time by its queue,
// through store, which is bound to the event's unit of work, and returns the events to publish.
// An event the rule can never apply is refused with a permanent error (failure.Permanent,
// failure.Invalid): nothing it did takes effect and it goes to the dead-letter queue. Any other
// error undoes the unit of work, to be tried again.
type Rule[S any, T Message] func(ctx context.Context, store S, ev Event[T]) ([]outbox.Event, error)

// Registry holds the rules of one consumer service, one per routing key it consumes. S is the
// service's store bound to a unit of work.
type Registry[S any] struct {
	name  string
	rules map[string]*Handler[S]
}

// Handler is one routing key's rule with its decoder, the message type erased, for the runners.
type Handler[S any] struct {
	MessageType string
	// Decode decodes and validates a delivery's body; its errors are permanent.
	Decode func(body []byte) (Envelope, error)
	// Apply runs the rule on a decoded event.
	Apply func(ctx context.Context, store S, ev Envelope) ([]outbox.Event, error)
}

// Envelope is a decoded event with its message type erased.
type Envelope struct {
	ID, OrderID string
	Msg         Message
}

// New returns the empty registry of the consumer service name (as in the catalog).
func New[S any](name string) *Registry[S] {
	return &Registry[S]{name: name, rules: map[string]*Handler[S]{}}
}

// Name is the service's name.
func (r *Registry[S]) Name() string { return r.name }

// On registers the rule for routing key. validate, when not nil, checks each event before its
// unit of work begins: an event it refuses goes to the dead-letter queue.
func On[M any, T interface {
	*M
	Message
}, S any](r *Registry[S], routingKey string, validate func(T) error, rule Rule[S, T]) {
	messageType := string(T(new(M)).ProtoReflect().Descriptor().FullName())
	if want := catalog.MessageType(routingKey); want != messageType {
		panic(fmt.Sprintf("rules: %s carries %q, not %q", routingKey, want, messageType))
	}
	r.rules[routingKey] = &Handler[S]{
		MessageType: messageType,
		Decode: func(body []byte) (Envelope, error) {
			msg := T(new(M))
			if err := proto.Unmarshal(body, msg); err != nil {
				return Envelope{}, failure.Permanent(fmt.Errorf("decode %s: %w", messageType, err))
			}
			id, err := uuid.Parse(msg.GetEventId())
			if err != nil {
				return Envelope{}, failure.Permanent(fmt.Errorf("%s: event_id: %w", messageType, err))
			}
			order, err := uuid.Parse(msg.GetOrderId())
			if err != nil {
				return Envelope{}, failure.Permanent(fmt.Errorf("%s %s: order_id: %w", messageType, id, err))
			}
			if validate != nil {
				if err := validate(msg); err != nil {
					return Envelope{}, failure.Permanent(fmt.Errorf("%s %s: %w", messageType, id, err))
				}
			}
			return Envelope{ID: id.String(), OrderID: order.String(), Msg: msg}, nil
		},
		Apply: func(ctx context.Context, store S, ev Envelope) ([]outbox.Event, error) {
			return rule(ctx, store, Event[T]{ID: ev.ID, OrderID: ev.OrderID, Msg: ev.Msg.(T)})
		},
	}
}

// Handlers returns the rule of each of the service's subscriptions in the catalog. It fails
// when the service has no rule for one of them, or a rule for an event it does not consume.
func (r *Registry[S]) Handlers() (map[catalog.Subscription]*Handler[S], error) {
	handlers := map[catalog.Subscription]*Handler[S]{}
	for _, sub := range catalog.SubscriptionsOf(r.name) {
		h, ok := r.rules[sub.RoutingKey]
		if !ok {
			return nil, fmt.Errorf("%s consumes %s but has no rule for it", r.name, sub.RoutingKey)
		}
		handlers[sub] = h
	}
	if len(handlers) != len(r.rules) {
		return nil, fmt.Errorf("%s has rules for events it does not consume", r.name)
	}
	return handlers, nil
}

// Apply decodes one event as a delivery of routingKey would be and applies its rule through
// store, without inbox or unit of work: for running the saga's rules in tests.
func (r *Registry[S]) Apply(ctx context.Context, store S, routingKey string, body []byte) ([]outbox.Event, error) {
	h, ok := r.rules[routingKey]
	if !ok {
		return nil, fmt.Errorf("%s has no rule for %s", r.name, routingKey)
	}
	ev, err := h.Decode(body)
	if err != nil {
		return nil, err
	}
	return h.Apply(ctx, store, ev)
}
