package memory_test

import (
	"testing"

	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/storetest"
	"github.com/ordersaga/ordersaga/services/inventory/memory"
)

// The in-memory store keeps the contract the PostgreSQL store keeps (internal/storetest).
func TestStoreContract(t *testing.T) {
	s, err := memory.New()
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t,
		func(*testing.T, []string, []string) (eventhandler.Store, func(bool)) { return s.Begin() },
		func(t *testing.T, productID string, total int64) {
			t.Helper()
			if err := s.SetStock(productID, total); err != nil {
				t.Fatal(err)
			}
		})
}
