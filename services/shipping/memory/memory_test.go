package memory_test

import (
	"testing"

	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/storetest"
	"github.com/ordersaga/ordersaga/services/shipping/memory"
)

// The in-memory store keeps the contract the PostgreSQL store keeps (internal/storetest).
func TestStoreContract(t *testing.T) {
	s, err := memory.New(1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(*testing.T, ...string) (eventhandler.Store, func(bool)) { return s.Begin() })
}
