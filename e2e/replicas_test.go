package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// TestWatchOrderAcrossReplicas watches on one order-service replica an order placed on the
// other: status changes reach every replica's watchers, whichever replica applied them.
func TestWatchOrderAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{Replicas: 2})
	clients := make([]orderv1.OrderServiceClient, 2)
	for r := range clients {
		conn, err := grpc.NewClient(s.Addr("order", r, "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[r] = orderv1.NewOrderServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// With payment stopped the order waits in PENDING, so the watch surely starts before the
	// changes it must report.
	for r := range 2 {
		if err := s.Stop("payment", r); err != nil {
			t.Fatal(err)
		}
	}
	created, err := clients[0].CreateOrder(ctx, &orderv1.CreateOrderRequest{
		CustomerId:    "123e4567-e89b-12d3-a456-426614174000",
		PaymentMethod: "credit_card",
		Items:         []*orderv1.LineItem{{ProductId: "00000000-0000-0000-0000-000000000001", Quantity: 1, UnitPrice: "10.00"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := clients[1].WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: created.GetOrder().GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := first.GetOrder().GetStatus(); got != orderv1.OrderStatus_ORDER_STATUS_PENDING {
		t.Fatalf("first update %s, want PENDING", got)
	}
	for r := range 2 {
		s.Restart("payment", r)
	}
	last := first.GetOrder().GetStatus()
	for {
		resp, err := stream.Recv()
		if err != nil {
			break
		}
		last = resp.GetOrder().GetStatus()
	}
	if last != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("the watch on the other replica ended at %s, want CONFIRMED", last)
	}
}
