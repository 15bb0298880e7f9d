package broker

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
)

// Event is what every event of the catalog carries.
type Event interface {
	proto.Message
	GetEventId() string
	GetOrderId() string
}

// Decode unmarshals a delivery into ev after checking its type. Every failure is Permanent:
// an undecodable payload, an unexpected message type or an event without valid ids can never
// be handled, so it goes to the dead-letter queue at once.
func Decode(d amqp.Delivery, ev Event) error {
	want := string(ev.ProtoReflect().Descriptor().FullName())
	if d.Type != want {
		return Permanent(fmt.Errorf("unknown message type %q on %s, want %q", d.Type, d.RoutingKey, want))
	}
	if err := proto.Unmarshal(d.Body, ev); err != nil {
		return Permanent(fmt.Errorf("decode %s: %w", want, err))
	}
	if err := uuid.Validate(ev.GetEventId()); err != nil {
		return Permanent(fmt.Errorf("%s: event_id: %w", want, err))
	}
	if err := uuid.Validate(ev.GetOrderId()); err != nil {
		return Permanent(fmt.Errorf("%s: order_id: %w", want, err))
	}
	return nil
}

// Invalid marks an event that decoded but breaks the contract (a missing field, a bad value).
func Invalid(format string, args ...any) error {
	return Permanent(errors.New(fmt.Sprintf(format, args...)))
}
