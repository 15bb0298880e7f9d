package outbox_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
)

func TestNewGivesEveryEventOfTheCatalogItsIDs(t *testing.T) {
	t.Parallel()
	orderID := uuid.NewString()
	for _, e := range catalog.Events {
		msg := e.Message.ProtoReflect().New().Interface()
		m := msg.ProtoReflect()
		m.Set(m.Descriptor().Fields().ByName("order_id"), protoreflect.ValueOfString(orderID))
		ev := outbox.New(e.RoutingKey, msg.(outbox.Message))
		id, err := uuid.Parse(ev.ID)
		if err != nil || id.Version() != 7 {
			t.Errorf("%s: event id %q, want a time-ordered UUID", e.RoutingKey, ev.ID)
		}
		got := ev.Payload.(interface {
			GetEventId() string
			GetOccurTime() *timestamppb.Timestamp
		})
		if got.GetEventId() != ev.ID || ev.OrderID != orderID || ev.RoutingKey != e.RoutingKey {
			t.Errorf("%s: event %+v carries event id %q", e.RoutingKey, ev, got.GetEventId())
		}
		if at := got.GetOccurTime().AsTime(); time.Since(at) > time.Minute || time.Since(at) < 0 {
			t.Errorf("%s: occurred at %v, want now", e.RoutingKey, at)
		}
	}
}

func TestNewKeepsTheTimeAnEventOccurred(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := outbox.New(catalog.PaymentFailed, &paymentv1.PaymentFailed{OrderId: uuid.NewString(), OccurTime: timestamppb.New(at)})
	if got := ev.Payload.(*paymentv1.PaymentFailed).GetOccurTime().AsTime(); !got.Equal(at) {
		t.Errorf("occurred at %v, want %v", got, at)
	}
}
