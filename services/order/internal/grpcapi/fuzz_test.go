package grpcapi

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// FuzzCreateOrderValidation runs CreateOrder's validation — the request as the wire delivers
// it, turned into params and checked by order.New — over arbitrary messages: it never panics,
// and what it refuses it refuses with a FieldError (INVALID_ARGUMENT naming the field), never
// anything that would surface as INTERNAL.
func FuzzCreateOrderValidation(f *testing.F) {
	for _, req := range []*orderv1.CreateOrderRequest{
		{
			CustomerId: "123e4567-e89b-12d3-a456-426614174000", PaymentMethod: "credit_card", RequestId: "k",
			Items:           []*orderv1.LineItem{{ProductId: "00000000-0000-0000-0000-000000000001", Quantity: 2, UnitPrice: "49.90"}},
			ShippingAddress: &orderv1.ShippingAddress{Recipient: "Ada", City: "Recife", CountryCode: "BR"},
		},
		{CustomerId: "urn:uuid:123e4567-e89b-12d3-a456-426614174000", PaymentMethod: "pix"},
		{CustomerId: "123e4567-e89b-12d3-a456-426614174000", PaymentMethod: "debit_card",
			Items:           []*orderv1.LineItem{{ProductId: "00000000-0000-0000-0000-000000000001", Quantity: 1, UnitPrice: "1e3"}},
			ShippingAddress: &orderv1.ShippingAddress{Recipient: "A\x00"}},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req orderv1.CreateOrderRequest
		if proto.Unmarshal(wire, &req) != nil {
			return // gRPC refuses it before the service sees it
		}
		p, err := params(&req)
		if err == nil {
			_, err = order.New(p, time.Now())
		}
		var fe *order.FieldError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("refused without naming a field: %v", err)
		}
	})
}
