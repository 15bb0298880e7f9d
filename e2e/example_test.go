package e2e

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// Example places an order with the generated Go client and follows it to its outcome. It runs
// against the stack of this package; a client would dial localhost:50051.
func Example() {
	conn, err := grpc.NewClient(sys.OrderGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := orderv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	created, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		CustomerId:    "123e4567-e89b-12d3-a456-426614174000",
		PaymentMethod: "credit_card",
		Items: []*orderv1.LineItem{
			{ProductId: "00000000-0000-0000-0000-000000000001", Quantity: 2, UnitPrice: "49.90"},
		},
		ShippingAddress: &orderv1.ShippingAddress{CountryCode: "BR"},
	})
	if err != nil {
		log.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()
	fmt.Println(created.GetOrder().GetStatus(), created.GetOrder().GetTotal())

	// WatchOrder streams the order after every status change and ends once it is terminal.
	stream, err := client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		log.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			break
		}
		if resp.GetOrder().GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
			break
		}
	}

	got, err := client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.GetOrder().GetStatus(), len(got.GetOrder().GetTrackingCode()))
	// Output:
	// ORDER_STATUS_PENDING 99.80
	// ORDER_STATUS_CONFIRMED 12
}
