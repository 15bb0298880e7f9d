package memory_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/storetest"
	"github.com/ordersaga/ordersaga/services/order/memory"
)

// The in-memory store keeps the contract the PostgreSQL store keeps (internal/storetest).
func TestStoreContract(t *testing.T) {
	s, err := memory.New()
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, storetest.Impl{
		Begin: func(*testing.T, ...string) (eventhandler.Store, func(bool)) { return s.Begin() },
		Place: func(t *testing.T) string {
			t.Helper()
			id, _, err := s.Place(memory.Request{
				CustomerID:    uuid.NewString(),
				PaymentMethod: "credit_card",
				Items:         []memory.Item{{ProductID: uuid.NewString(), Quantity: 2, UnitPrice: "49.90"}},
				CountryCode:   "BR",
			})
			if err != nil {
				t.Fatal(err)
			}
			return id
		},
		History: func(t *testing.T, id string) []order.Status {
			t.Helper()
			o, ok := s.Order(id)
			if !ok {
				t.Fatalf("order %s does not exist", id)
			}
			var statuses []order.Status
			for _, st := range o.History {
				statuses = append(statuses, order.Status(st))
			}
			return statuses
		},
	})
}
