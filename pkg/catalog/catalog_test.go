package catalog_test

import (
	"slices"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// The queue names are public (DESIGN.md): operators and dashboards depend on them.
func TestQueuesAreTheFixedOnes(t *testing.T) {
	var got []string
	for _, s := range catalog.Subscriptions() {
		got = append(got, s.Queue()+" <- "+s.Exchange())
	}
	want := []string{
		"payment.order-created <- order.exchange",
		"payment.order-cancelled <- order.exchange",
		"inventory.order-cancelled <- order.exchange",
		"shipping.order-cancelled <- order.exchange",
		"inventory.payment-approved <- payment.exchange",
		"order.payment-approved <- payment.exchange",
		"order.payment-failed <- payment.exchange",
		"order.payment-reversed <- payment.exchange",
		"shipping.inventory-reserved <- inventory.exchange",
		"order.inventory-reserved <- inventory.exchange",
		"payment.inventory-failed <- inventory.exchange",
		"order.inventory-failed <- inventory.exchange",
		"payment.inventory-released <- inventory.exchange",
		"order.shipping-scheduled <- shipping.exchange",
		"inventory.shipping-failed <- shipping.exchange",
		"order.shipping-failed <- shipping.exchange",
	}
	if !slices.Equal(got, want) {
		t.Errorf("queues:\n got %q\nwant %q", got, want)
	}
}

func TestMessageTypes(t *testing.T) {
	for key, want := range map[string]string{
		catalog.OrderCreated:      "order.v1.OrderCreated",
		catalog.OrderCancelled:    "order.v1.OrderCancelled",
		catalog.PaymentApproved:   "payment.v1.PaymentApproved",
		catalog.InventoryReleased: "inventory.v1.InventoryReleased",
		catalog.ShippingFailed:    "shipping.v1.ShippingFailed",
		"order.unknown":           "",
	} {
		if got := catalog.MessageType(key); got != want {
			t.Errorf("MessageType(%q) = %q, want %q", key, got, want)
		}
	}
	if got := catalog.SubscriptionsOf(catalog.Payment); len(got) != 4 {
		t.Errorf("payment consumes %d events, want 4", len(got))
	}
}
